import numpy as np
import pytest

from goodhartlab.measure.kl import (
    empirical_distribution,
    kl_bestofn,
    kl_bestofn_exact,
    sequence_kl,
    to_nats_per_sequence,
    token_kl,
)

# Gao et al. 2022 §1.3 / research/rlhf-anchors.md §1.3 [measured]: log n − (n−1)/n.
PUBLISHED = {2: 0.1931, 4: 0.6363, 16: 1.8351, 64: 3.1745, 1000: 5.9088, 12500: 8.4336, 60000: 10.0021}


@pytest.mark.parametrize(("n", "expected"), PUBLISHED.items())
def test_kl_bestofn_matches_published_table(n, expected):
    assert kl_bestofn(n) == pytest.approx(expected, abs=1e-4)


def test_kl_bestofn_vectorized_and_zero_at_one():
    values = kl_bestofn([1, 2, 4])
    assert values.shape == (3,)
    assert values[0] == 0.0


def test_kl_bestofn_rejects_bad_n():
    with pytest.raises(ValueError, match="n"):
        kl_bestofn(0)
    with pytest.raises(ValueError, match="whole"):
        kl_bestofn(2.5)


def test_exact_equals_analytic_when_samples_never_repeat():
    outcomes = 1_000_000
    probabilities = np.full(outcomes, 1 / outcomes)
    for n in (2, 16, 64):
        exact = kl_bestofn_exact(probabilities, np.arange(outcomes), n)
        assert exact == pytest.approx(kl_bestofn(n), abs=1e-6)


def test_exact_is_below_analytic_with_repeats_and_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        probabilities = rng.dirichlet(np.ones(8))
        rewards = rng.integers(0, 4, 8).astype(float)  # ties too
        for n in (2, 4, 16, 256):
            assert kl_bestofn_exact(probabilities, rewards, n) <= kl_bestofn(n) + 1e-12


def test_exact_small_case_by_hand():
    # Two equally likely outcomes with rewards 0 < 1: best-of-2 picks 1 with prob 3/4.
    expected = 0.25 * np.log(0.25 / 0.5) + 0.75 * np.log(0.75 / 0.5)
    assert kl_bestofn_exact([0.5, 0.5], [0.0, 1.0], 2) == pytest.approx(expected)
    # All rewards tied: best-of-n is the base policy.
    assert kl_bestofn_exact([0.2, 0.3, 0.5], [1.0, 1.0, 1.0], 8) == pytest.approx(0.0)


def test_empirical_distribution_counts_repeats():
    probabilities, rewards = empirical_distribution(["a", "b", "a", "c"], [1.0, 2.0, 1.0, 0.5])
    assert sorted(zip(probabilities.tolist(), rewards.tolist(), strict=True)) == [(0.25, 0.5), (0.25, 2.0), (0.5, 1.0)]
    assert kl_bestofn_exact(probabilities, rewards, 4) < kl_bestofn(4)


def test_token_estimators_agree_with_definitions():
    policy = np.log(np.array([[0.5, 0.2, 0.9]]))
    ref = np.log(np.array([[0.25, 0.4, 0.9]]))
    log_ratio = ref - policy
    np.testing.assert_allclose(token_kl(policy, ref, "k1"), -log_ratio)
    np.testing.assert_allclose(token_kl(policy, ref, "k2"), 0.5 * log_ratio**2)
    np.testing.assert_allclose(token_kl(policy, ref, "k3"), np.exp(log_ratio) - 1 - log_ratio)
    assert (token_kl(policy, ref, "k3") >= 0).all()


def test_k1_and_k3_are_unbiased_for_the_true_kl():
    rng = np.random.default_rng(1)
    p = np.array([0.6, 0.3, 0.1])
    q = np.array([0.3, 0.4, 0.3])
    true_kl = float(np.sum(p * np.log(p / q)))
    tokens = rng.choice(3, size=400_000, p=p)
    for estimator in ("k1", "k3"):
        estimate = token_kl(np.log(p[tokens]), np.log(q[tokens]), estimator).mean()
        assert estimate == pytest.approx(true_kl, abs=0.005)


def test_sequence_kl_sums_tokens_and_masks_padding():
    policy = np.log(np.full((2, 3), 0.5))
    ref = np.log(np.full((2, 3), 0.25))
    mask = np.array([[1, 1, 1], [1, 0, 0]])
    np.testing.assert_allclose(sequence_kl(policy, ref, mask), [3 * np.log(2), np.log(2)])
    with pytest.raises(ValueError, match="mask"):
        sequence_kl(policy, ref, mask[:, :2])


def test_unit_conversion():
    assert to_nats_per_sequence(0.1, "nats_per_token", 20) == pytest.approx(2.0)
    assert to_nats_per_sequence(1.0, "bits_per_sequence") == pytest.approx(np.log(2))
    assert to_nats_per_sequence(2.0, "nats_per_sequence") == pytest.approx(2.0)
    with pytest.raises(ValueError, match="mean completion length"):
        to_nats_per_sequence(0.1, "nats_per_token")
    with pytest.raises(ValueError, match="not finite"):
        to_nats_per_sequence(float("nan"), "nats_per_sequence")
