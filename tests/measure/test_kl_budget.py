"""The KL-fixed mixture, total-budget accounting and Proposition 1 of Cohen et al. (arXiv 2410.06213)."""

from __future__ import annotations

import numpy as np
import pytest

from goodhartlab.measure.kl import discrete_kl
from goodhartlab.measure.kl_budget import (
    KLBudget,
    kl_fixed_mixture,
    log_softmax,
    pessimistic_base,
    proposition_1_example,
)


def random_rows(rows: int, outcomes: int, seed: int = 0, spread: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return log_softmax(rng.normal(0, spread, (rows, outcomes))), rng.normal(0, spread, (rows, outcomes))


def test_discrete_kl_matches_the_definition_and_handles_support() -> None:
    p, q = np.array([0.2, 0.8]), np.array([0.5, 0.5])
    assert discrete_kl(np.log(p), np.log(q)) == pytest.approx(0.2 * np.log(0.4) + 0.8 * np.log(1.6))
    with np.errstate(divide="ignore"):
        assert discrete_kl(np.log([1.0, 0.0]), np.log(q)) == pytest.approx(np.log(2))  # p's zeros cost nothing
        assert discrete_kl(np.log(q), np.log([1.0, 0.0])) == np.inf  # q's zeros where p has mass: infinite
    # a sub-normalized q costs -log of its mass on top of the KL to its normalization
    assert discrete_kl(np.log(p), np.log(q * 0.5)) == pytest.approx(discrete_kl(np.log(p), np.log(q)) + np.log(2))


def test_mixture_hits_every_target_within_1e_6() -> None:
    base, logits = random_rows(512, 200)
    ceiling = discrete_kl(log_softmax(logits), base)
    targets = np.random.default_rng(1).uniform(0, 1, 512) * ceiling  # every row reachable, from ~0 to the ceiling
    solution = kl_fixed_mixture(base, logits, targets)
    assert np.all(np.abs(solution.kl - targets) <= 1e-6)
    assert np.all(np.abs(discrete_kl(solution.log_mixture, base) - targets) <= 1e-6)  # recomputed independently
    mixture = np.exp(solution.log_mixture)
    expected = (1 - solution.alpha[:, None]) * np.exp(base) + solution.alpha[:, None] * np.exp(log_softmax(logits))
    np.testing.assert_allclose(mixture, expected, atol=1e-12)
    assert np.all((solution.alpha >= 0) & (solution.alpha <= 1)) and solution.reachable.all()
    assert solution.iterations < 40  # Newton inside its bracket, not a plain bisection's ~40 halvings


def test_tiny_and_zero_targets() -> None:
    base, logits = random_rows(4, 50)
    solution = kl_fixed_mixture(base, logits, [0.0, 1e-9, 1e-4, 1e-2])
    assert solution.alpha[0] == 0 and solution.kl[0] == 0
    np.testing.assert_allclose(solution.kl[1:], [1e-9, 1e-4, 1e-2], atol=1e-10)


def test_a_target_beyond_the_proposal_spends_only_what_the_proposal_can() -> None:
    base, logits = random_rows(3, 20)
    ceiling = discrete_kl(log_softmax(logits), base)
    solution = kl_fixed_mixture(base, logits, ceiling + np.array([0.0, 1.0, 100.0]))
    assert np.all(solution.alpha == 1.0)
    np.testing.assert_allclose(solution.kl, ceiling, atol=1e-12)
    assert list(solution.reachable) == [True, False, False] and not solution.moves.any()


def test_implicit_derivatives_match_finite_differences() -> None:
    base, logits = random_rows(1, 12, seed=3)
    target, eps = 0.3, 1e-6
    solution = kl_fixed_mixture(base, logits, target, tolerance=1e-14)
    assert solution.moves.all()
    # d alpha / d target = 1 / slope
    up = kl_fixed_mixture(base, logits, target + eps, tolerance=1e-14).alpha[0]
    assert (up - solution.alpha[0]) / eps == pytest.approx(1 / solution.slope[0], rel=1e-4)
    # d alpha / d q_v along a direction that keeps q a distribution: move the logits, follow q by the chain rule
    direction = np.random.default_rng(4).normal(size=12)
    moved = kl_fixed_mixture(base, logits + eps * direction, target, tolerance=1e-14).alpha[0]
    q = np.exp(log_softmax(logits))[0]
    dq = q * (direction - q @ direction)
    predicted = -(solution.proposal_gradient[0] @ dq) / solution.slope[0]
    assert (moved - solution.alpha[0]) / eps == pytest.approx(predicted, rel=1e-4)


def test_outcomes_the_base_rules_out_stay_ruled_out() -> None:
    with np.errstate(divide="ignore"):
        base = np.log(np.array([[0.5, 0.5, 0.0]]))
    solution = kl_fixed_mixture(base, np.array([[0.0, 1.0, 50.0]]), 0.05)
    assert np.exp(solution.log_mixture[0, 2]) == 0 and abs(solution.kl[0] - 0.05) <= 1e-10


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"target": -0.1}, "target"), ({"target": np.nan}, "target"), ({"target": np.inf}, "target"),
    ({"log_base": np.log([[0.5, 0.4]])}, "sums to"), ({"proposal_logits": [[np.nan, 0.0]]}, "NaN"),
    ({"proposal_logits": [[0.0, 0.0, 0.0]]}, "shape")])
def test_bad_input_is_a_clear_error(kwargs: dict, match: str) -> None:
    settings = {"log_base": np.log([[0.5, 0.5]]), "proposal_logits": [[0.0, 1.0]], "target": 0.1, **kwargs}
    with pytest.raises(ValueError, match=match):
        kl_fixed_mixture(settings["log_base"], settings["proposal_logits"], settings["target"])


def test_a_budget_is_never_exceeded_over_an_episode() -> None:
    rng = np.random.default_rng(0)
    budget = KLBudget(5.0, episodes=64)
    for _ in range(200):  # each token asks for a random share of what is left, often all of it
        base, logits = random_rows(64, 30, seed=int(rng.integers(1 << 30)), spread=4.0)
        fraction = np.where(rng.random(64) < 0.2, 1.0, rng.random(64))
        solution = kl_fixed_mixture(base, logits, budget.allowance(fraction))
        before = budget.remaining.copy()
        charged = budget.spend(solution.kl)
        assert np.all(charged <= before) and np.all(budget.remaining >= 0)
    assert np.all(budget.spent <= budget.total) and budget.spent.max() == pytest.approx(5.0)


def test_budget_refuses_bad_totals_and_overspending() -> None:
    for total in (0, -1.0, float("nan"), float("inf"), True):
        with pytest.raises(ValueError, match="budget"):
            KLBudget(total)  # type: ignore[arg-type]
    budget = KLBudget(1.0, episodes=2)
    budget.spend([0.6, 1.0 + 1e-10])  # rounding past the end is cut to what remains
    assert list(budget.remaining) == [pytest.approx(0.4), 0.0]
    with pytest.raises(ValueError, match=r"only 0\.4"):
        budget.spend(0.5, episodes=[0])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        budget.allowance(1.5)


@pytest.mark.parametrize("epsilon", [0.05, 0.5, 2.0])
def test_proposition_1_two_policies_near_the_base_are_infinitely_far_apart(epsilon: float) -> None:
    example = proposition_1_example(epsilon)
    assert example.kl_trusted_base == pytest.approx(epsilon, abs=1e-12)  # τ is within ε of β ...
    assert example.kl_policy_base <= epsilon + 1e-9  # ... and so is π ...
    if example.policy[1] < 1:  # ... which spends all of ε unless ε buys silence always
        assert example.kl_policy_base == pytest.approx(epsilon, abs=1e-9)
    assert example.kl_policy_trusted == np.inf  # ... yet π does what τ never does
    assert example.trusted[1] == 0 and example.policy[1] > example.base[1] > 0


def test_proposition_1_numbers_quoted_in_the_docstring() -> None:
    example = proposition_1_example(0.5)
    assert example.base[1] == pytest.approx(0.39, abs=0.005) and example.policy[1] == pytest.approx(0.87, abs=0.005)
    assert proposition_1_example(0.7).policy[1] == 1.0 and proposition_1_example(0.65).policy[1] < 1.0


def test_pessimistic_base_charges_each_outcome_against_its_least_willing_member() -> None:
    members = np.log(np.array([[[0.7, 0.2, 0.1]], [[0.5, 0.1, 0.4]]]))
    pessimistic = pessimistic_base(members)
    nu = np.array([0.5, 0.1, 0.1])
    assert pessimistic.disagreement[0] == pytest.approx(0.3) and pessimistic.floor[0] == pytest.approx(-np.log(0.7))
    np.testing.assert_allclose(np.exp(pessimistic.log_normalized[0]), nu / 0.7)
    policy = np.log(np.array([0.6, 0.3, 0.1]))
    charged = discrete_kl(policy, pessimistic.log_normalized[0]) + pessimistic.floor[0]
    assert charged == pytest.approx(discrete_kl(policy, np.log(nu)))  # = KL against the sub-normalized ν
    assert charged >= max(discrete_kl(policy, members[i, 0]) for i in range(2))  # never below any member's KL
    agreeing = pessimistic_base(np.log(np.array([[0.5, 0.5], [0.5, 0.5]])))
    assert agreeing.disagreement == pytest.approx(0.0, abs=1e-15) and agreeing.floor == pytest.approx(0.0, abs=1e-15)
