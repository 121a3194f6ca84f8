import math

import numpy as np
import pytest
from scipy.special import comb

from goodhartlab.measure.bestofn import BestOfNCurve, bestofn_curve, bestofn_ragged, bestofn_weights, peak_drop
from goodhartlab.measure.kl import kl_bestofn
from goodhartlab.measure.synthetic import goodhart_pool


def test_weights_sum_to_one_and_match_exact_binomials():
    pool = 60
    ns = [1, 2, 7, 30, 60]
    weights = bestofn_weights(pool, ns)
    np.testing.assert_allclose(weights.sum(axis=0), 1.0, atol=1e-12)
    for j, n in enumerate(ns):
        exact = [comb(i - 1, n - 1, exact=True) / comb(pool, n, exact=True) if i >= n else 0.0
                 for i in range(1, pool + 1)]
        np.testing.assert_allclose(weights[:, j], exact, rtol=1e-9, atol=1e-300)


def test_endpoints_mean_and_argmax():
    rng = np.random.default_rng(0)
    proxy, gold = rng.normal(size=(5, 40)), rng.normal(size=(5, 40))
    curve = bestofn_curve(proxy, gold, [1, 40])
    np.testing.assert_allclose(curve.gold_per_prompt[:, 0], gold.mean(axis=1))
    argmax_gold = gold[np.arange(5), proxy.argmax(axis=1)]
    np.testing.assert_allclose(curve.gold_per_prompt[:, 1], argmax_gold)
    np.testing.assert_allclose(curve.proxy_per_prompt[:, 1], proxy.max(axis=1))


def test_agrees_with_naive_monte_carlo_within_three_standard_errors():
    rng = np.random.default_rng(3)
    proxy, gold = goodhart_pool(1, 200, df=1.5, seed=5)
    proxy, gold = proxy[0], gold[0]
    estimate = bestofn_curve(proxy, gold, [4, 16, 64])
    draws = 40_000
    for j, n in enumerate((4, 16, 64)):
        picks = np.array([rng.choice(200, n, replace=False) for _ in range(draws)])
        chosen = picks[np.arange(draws), proxy[picks].argmax(axis=1)]
        samples = gold[chosen]
        se = samples.std(ddof=1) / math.sqrt(draws)
        assert abs(estimate.gold[j] - samples.mean()) < 3 * se


def test_ties_are_averaged_over_the_tied_block():
    proxy = np.array([[0.0, 1.0, 1.0, 1.0]])
    gold = np.array([[5.0, 0.0, 3.0, 6.0]])
    curve = bestofn_curve(proxy, gold, [4])
    assert curve.gold[0] == pytest.approx(3.0)  # uniform tie-break among the three 1.0s
    # The answer does not depend on how the tied answers are ordered in the input.
    shuffled = bestofn_curve(proxy[:, [3, 1, 0, 2]], gold[:, [3, 1, 0, 2]], [1, 2, 3, 4])
    reference = bestofn_curve(proxy, gold, [1, 2, 3, 4])
    np.testing.assert_allclose(shuffled.gold, reference.gold)


def test_ties_match_monte_carlo_with_random_tie_breaking():
    rng = np.random.default_rng(4)
    proxy = rng.integers(0, 3, 30).astype(float)
    gold = rng.normal(size=30)
    estimate = bestofn_curve(proxy, gold, [5]).gold[0]
    draws = 60_000
    values = np.empty(draws)
    for k in range(draws):
        pick = rng.choice(30, 5, replace=False)
        best = pick[proxy[pick] == proxy[pick].max()]
        values[k] = gold[rng.choice(best)]
    assert abs(estimate - values.mean()) < 3 * values.std(ddof=1) / math.sqrt(draws)


def test_threads_do_not_change_the_numbers():
    proxy, gold = goodhart_pool(50, 300, seed=1)
    one = bestofn_curve(proxy, gold, [1, 3, 300], threads=1)
    two = bestofn_curve(proxy, gold, [1, 3, 300], threads=2)
    np.testing.assert_array_equal(one.gold_per_prompt, two.gold_per_prompt)


def test_ragged_pools_equal_per_prompt_results():
    rng = np.random.default_rng(2)
    pools = [rng.normal(size=(2, size)) for size in (10, 16, 10)]
    ragged = bestofn_ragged([p[0] for p in pools], [p[1] for p in pools], [1, 4, 10])
    for index, (proxy, gold) in enumerate(pools):
        single = bestofn_curve(proxy, gold, [1, 4, 10])
        np.testing.assert_allclose(ragged.gold_per_prompt[index], single.gold_per_prompt[0])


def test_bad_input_names_the_problem():
    with pytest.raises(ValueError, match="exceeds the pool size"):
        bestofn_curve(np.zeros((2, 3)), np.zeros((2, 3)), [4])
    with pytest.raises(ValueError, match=r"gold_scores: value nan at index \(1, 2\)"):
        bad = np.zeros((2, 3))
        bad[1, 2] = np.nan
        bestofn_curve(np.zeros((2, 3)), bad, [1])
    with pytest.raises(ValueError, match="shape"):
        bestofn_curve(np.zeros((2, 3)), np.zeros((2, 4)), [1])


def _curve(gold_per_prompt: np.ndarray) -> BestOfNCurve:
    ns = np.array([1, 2, 4, 8][:gold_per_prompt.shape[1]])
    return BestOfNCurve(ns=ns, kl=np.atleast_1d(kl_bestofn(ns)), proxy_per_prompt=np.zeros_like(gold_per_prompt),
                        gold_per_prompt=gold_per_prompt)


def test_peak_drop_is_paired_over_prompts():
    # Prompts sit at very different levels, but every one of them falls by 0.1 after n = 2: pairing
    # cancels the levels, so the interval is tight around 0.1 and every prompt counts as falling.
    rng = np.random.default_rng(0)
    levels = rng.uniform(0, 5, size=(20, 1))
    shape = np.array([0.0, 0.3, 0.25, 0.2])
    drop = peak_drop(_curve(levels + shape + rng.normal(0, 0.01, size=(20, 4))))
    assert (drop.peak_n, drop.last_n, drop.prompts_falling) == (2, 8, 20)
    assert drop.drop == pytest.approx(0.1, abs=0.01)
    assert drop.interval is not None and 0.09 < drop.interval[0] < 0.1 < drop.interval[1] < 0.11


def test_peak_drop_interval_covers_zero_when_only_some_prompts_fall():
    shape = np.array([[0.0, 0.5, 0.5, 0.1], [0.0, 0.5, 0.5, 0.9], [0.0, 0.5, 0.5, 0.2], [0.0, 0.5, 0.5, 0.6]])
    drop = peak_drop(_curve(shape))
    assert drop.peak_n == 2 and drop.drop == pytest.approx(0.05) and drop.prompts_falling == 2
    assert drop.interval is not None and drop.interval[0] < 0 < drop.interval[1]
    assert drop == peak_drop(_curve(shape)), "the same seed gives the same interval"


def test_no_drop_when_gold_peaks_at_the_largest_n():
    drop = peak_drop(_curve(np.array([[0.1, 0.2, 0.3], [0.2, 0.3, 0.5]])))
    assert (drop.peak_n, drop.drop, drop.interval, drop.prompts_falling) == (4, 0.0, (0.0, 0.0), 0)
    assert drop.to_dict()["gold_peak_n"] == 4


def test_a_flat_top_within_rounding_is_no_fall():
    # A gold that saturates: the largest n equals the peak up to float rounding, and some prompts
    # never change at all; neither is a fall.
    flat = np.array([[0.2, 1.0, 1.0 - 1e-15], [0.7, 0.7, 0.7 + 1e-16], [0.1, 0.9, 0.9]])
    drop = peak_drop(_curve(flat))
    assert drop.peak_n == drop.last_n == 4 and drop.drop == 0.0 and drop.prompts_falling == 0


def test_one_prompt_has_a_drop_but_no_interval():
    drop = peak_drop(_curve(np.array([[0.1, 0.5, 0.2]])))
    assert drop.drop == pytest.approx(0.3) and drop.interval is None and drop.prompts_falling == 1
    assert drop.to_dict()["gold_drop_low"] is None


def test_peak_drop_refuses_a_bad_confidence():
    with pytest.raises(ValueError, match="confidence"):
        peak_drop(_curve(np.ones((2, 3))), confidence=1.0)
