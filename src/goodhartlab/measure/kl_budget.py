"""A total KL budget per episode, and why KL to a base policy is a weak guard.

Cohen, Hutter, Bengio & Russell, "RL, but don't do anything I wouldn't do" (arXiv 2410.06213), hold an
agent to a fixed *total* KL to a base policy over an episode, not to a per-token penalty. Each token the
agent proposes a distribution and says how much of what is left it wants to spend; the token is then
drawn from the mixture π = (1 − α)·base + α·proposal whose KL(π ‖ base) is exactly that amount
(`kl_fixed_mixture`). `KLBudget` keeps the remaining budget of every episode of a batch as state, and
charges each token's KL against it, never more than remains. Summed along any trajectory the per-token
KLs then stay within the budget, so the KL of the whole episode's distribution (the expectation of that
sum) does too.

`proposition_1_example` makes the paper's Proposition 1 concrete: a trusted policy τ and a policy π can
both be within ε of the base β while π does what τ never does (KL(π ‖ τ) = ∞). A Bayesian imitator of τ
must give simple behaviours τ never shows some probability, and KL to it prices them cheaply.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from goodhartlab.measure.kl import discrete_kl

NORMALIZATION_TOLERANCE = 1e-6
"""How far a row of base probabilities may sum from 1 (float32 softmax outputs land within 1e-7)."""


@dataclass(frozen=True)
class MixtureSolution:
    """The KL-fixed mixture of each row: π = (1 − α)·base + α·proposal with KL(π ‖ base) = target.

    KL(π_α ‖ base) rises from 0 at α = 0 to KL(proposal ‖ base) at α = 1 and is convex in α, so a target
    above KL(proposal ‖ base) cannot be reached: there α = 1, `reachable` is False and `kl` (what the row
    spends) is KL(proposal ‖ base), less than asked. `slope` (dKL/dα) and `proposal_gradient` (∂KL/∂q_v
    with α held) at the solution give α's derivatives by the implicit function theorem, for a learner that
    trains through the mixture: dα = (d target − Σ_v ∂KL/∂q_v · dq_v) / slope where the row is reachable
    and 0 < α < 1; α does not move elsewhere."""

    alpha: NDArray[np.float64]
    kl: NDArray[np.float64]
    target: NDArray[np.float64]
    reachable: NDArray[np.bool_]
    log_mixture: NDArray[np.float64]
    log_proposal: NDArray[np.float64]
    slope: NDArray[np.float64]
    proposal_gradient: NDArray[np.float64]
    iterations: int

    @property
    def moves(self) -> NDArray[np.bool_]:
        """Rows whose α has a derivative: reachable, strictly inside (0, 1), with a positive slope."""
        return self.reachable & (self.alpha > 0) & (self.alpha < 1) & (self.slope > 0)


def log_softmax(logits: NDArray[np.float64]) -> NDArray[np.float64]:
    """Log-probabilities of each row of logits (−inf entries stay ruled out)."""
    top = np.max(logits, axis=-1, keepdims=True)
    shifted = logits - top
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def _log_mixture(log_base: NDArray[np.float64], log_proposal: NDArray[np.float64],
                 alpha: NDArray[np.float64]) -> NDArray[np.float64]:
    a = alpha[:, None]
    with np.errstate(divide="ignore"):
        return np.logaddexp(np.log1p(-a) + log_base, np.log(a) + log_proposal)


def _check_rows(log_base: ArrayLike, proposal_logits: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    base = np.asarray(log_base, dtype=np.float64)
    logits = np.asarray(proposal_logits, dtype=np.float64)
    if base.ndim not in (1, 2) or base.shape != logits.shape:
        raise ValueError(f"log_base {base.shape} and proposal_logits {logits.shape} must have the same shape, "
                         "(outcomes,) or (rows, outcomes)")
    for name, values in (("log_base", base), ("proposal_logits", logits)):
        if np.isnan(values).any() or (values == np.inf).any():
            raise ValueError(f"{name} must be finite or -inf (an outcome ruled out), not NaN or +inf")
    base, logits = np.atleast_2d(base), np.atleast_2d(logits)
    totals = np.exp(base).sum(axis=-1)
    bad = np.abs(totals - 1.0) > NORMALIZATION_TOLERANCE
    if bad.any():
        row = int(np.argmax(bad))
        raise ValueError(f"log_base row {row} sums to {totals[row]:.9g}, not 1: pass normalized base log-probabilities "
                         "(a sub-normalized pessimistic base: normalize it, and count -log of its mass apart)")
    # mass where the base has none would make every α > 0 infinitely costly, so the proposal lives on the base's support
    logits = np.where(np.isneginf(base), -np.inf, logits)
    if np.isneginf(logits).all(axis=-1).any():
        raise ValueError("a proposal row gives no outcome the base allows any probability")
    return base, logits


def kl_fixed_mixture(log_base: ArrayLike, proposal_logits: ArrayLike, target: ArrayLike, *, tolerance: float = 1e-10,
                     max_iterations: int = 200) -> MixtureSolution:
    """The weight α ∈ [0, 1] of π = (1 − α)·base + α·softmax(proposal_logits) with KL(π ‖ base) = target, per row.

    Vectorized over rows; `target` is a number or one per row, in nats, >= 0. g(α) = KL(π_α ‖ base) −
    target is convex and increasing on [0, 1] with g(0) ≤ 0, so Newton's method started at α = 1 walks
    down to the root without overshooting; each step is kept inside a bisection bracket, so rounding
    cannot throw it out. Rows stop when |g| ≤ `tolerance` nats. A row whose target exceeds
    KL(proposal ‖ base) gets α = 1 and spends only that (see `MixtureSolution`)."""
    base, logits = _check_rows(log_base, proposal_logits)
    rows = base.shape[0]
    wanted = np.broadcast_to(np.asarray(target, dtype=np.float64), (rows,)).copy()
    if not np.isfinite(wanted).all() or (wanted < 0).any():
        bad = wanted[~(np.isfinite(wanted) & (wanted >= 0))][0]
        raise ValueError(f"target KL must be finite and >= 0 nats, got {bad}")
    if not tolerance > 0:
        raise ValueError(f"tolerance must be > 0, got {tolerance}")
    proposal = log_softmax(logits)
    ceiling = discrete_kl(proposal, base)  # KL at α = 1: the most a row can spend
    alpha = np.where(ceiling <= wanted, 1.0, np.where(wanted == 0, 0.0, 1.0))
    low, high = np.zeros(rows), np.ones(rows)
    open_rows = (wanted > 0) & (ceiling > wanted)
    iterations = 0
    q, b = np.exp(proposal), np.exp(base)
    while open_rows.any() and iterations < max_iterations:
        iterations += 1
        index = np.flatnonzero(open_rows)
        a = alpha[index]
        mixed = _log_mixture(base[index], proposal[index], a)
        gap = discrete_kl(mixed, base[index]) - wanted[index]
        done = np.abs(gap) <= tolerance
        high[index] = np.where(gap > 0, a, high[index])
        low[index] = np.where(gap < 0, a, low[index])
        moved = q[index] - b[index]
        with np.errstate(invalid="ignore"):
            slope = np.sum(np.where(q[index] + b[index] > 0, moved * (mixed - base[index]), 0.0), axis=-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            step = a - gap / slope
        inside = np.isfinite(step) & (step > low[index]) & (step < high[index])
        alpha[index] = np.where(done, a, np.where(inside, step, 0.5 * (low[index] + high[index])))
        stuck = high[index] - low[index] <= 4 * np.finfo(float).eps  # the bracket cannot shrink further
        open_rows[index] = ~(done | stuck)
    if open_rows.any():
        raise RuntimeError(f"kl_fixed_mixture: {int(open_rows.sum())} row(s) did not reach |KL - target| <= "
                           f"{tolerance:g} in {max_iterations} iterations")
    mixed = _log_mixture(base, proposal, alpha)
    kl = discrete_kl(mixed, base)
    with np.errstate(invalid="ignore"):
        log_ratio = np.where(np.isneginf(mixed), 0.0, mixed - base)
    slope = np.sum((q - b) * log_ratio, axis=-1)
    return MixtureSolution(alpha=alpha, kl=kl, target=wanted, reachable=ceiling >= wanted, log_mixture=mixed,
                           log_proposal=proposal, slope=slope, proposal_gradient=alpha[:, None] * (log_ratio + 1.0),
                           iterations=iterations)


class KLBudget:
    """The KL each episode of a batch may still spend: the state of a total-budget agent.

    `allowance(fraction)` is what a token may ask for (a fraction of what remains); `spend(kl)` charges
    each episode's token. A charge never exceeds what remains: an overrun within `slack` (a solver's
    rounding) is cut to what remains, a larger one is an error, since it means the caller spent KL the
    budget never allowed. So `spent` never exceeds `total`."""

    def __init__(self, total: float, episodes: int = 1, *, slack: float = 1e-8) -> None:
        if isinstance(total, bool) or not isinstance(total, int | float) or not math.isfinite(total) or total <= 0:
            raise ValueError(f"a KL budget must be a finite number of nats > 0, got {total!r}")
        if episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {episodes}")
        self.total, self.episodes, self.slack = float(total), episodes, slack
        self.remaining = np.full(episodes, self.total)

    @property
    def spent(self) -> NDArray[np.float64]:
        return self.total - self.remaining

    def allowance(self, fraction: ArrayLike) -> NDArray[np.float64]:
        """`fraction` (in [0, 1], one per episode or one for all) of each episode's remaining budget."""
        share = np.broadcast_to(np.asarray(fraction, dtype=np.float64), (self.episodes,))
        if not np.isfinite(share).all() or (share < 0).any() or (share > 1).any():
            raise ValueError("a fraction of the remaining budget must lie in [0, 1]")
        return share * self.remaining

    def spend(self, kl: ArrayLike, episodes: ArrayLike | None = None) -> NDArray[np.float64]:
        """Charge `kl` nats to `episodes` (indices; all of them by default) and return what was charged."""
        index = np.arange(self.episodes) if episodes is None else np.asarray(episodes, dtype=np.int64)
        amount = np.broadcast_to(np.asarray(kl, dtype=np.float64), index.shape)
        if not np.isfinite(amount).all() or (amount < -self.slack).any():
            raise ValueError("a token's KL must be a finite number of nats >= 0")
        over = amount - self.remaining[index]
        if (over > self.slack).any():
            worst = int(np.argmax(over))
            raise ValueError(f"episode {int(index[worst])} tried to spend {amount[worst]:.6g} nats with only "
                             f"{self.remaining[index][worst]:.6g} left of its {self.total:g}-nat budget")
        charged = np.clip(amount, 0.0, self.remaining[index])
        self.remaining[index] = self.remaining[index] - charged
        return charged


@dataclass(frozen=True)
class PessimisticBase:
    """The pessimistic imitator of an ensemble: ν(v) = min over members of m_i(v), each outcome as likely as the
    member least willing to produce it ("don't do anything I *mightn't* do", Cohen et al. §5).

    ν sums to less than 1; the rest, `disagreement` = 1 − Σν, is where the members disagree: the mass an
    ask-for-help imitator hands to the demonstrator. A policy π is charged KL(π ‖ ν) = KL(π ‖ ν̄) + `floor`,
    with ν̄ = ν / Σν (`log_normalized`) and floor = −log Σν: each outcome's log-ratio is taken against the member
    that gives it the least probability, so acting at all costs at least the floor."""

    log_normalized: NDArray[np.float64]
    floor: NDArray[np.float64]
    disagreement: NDArray[np.float64]


def pessimistic_base(member_log_probs: ArrayLike) -> PessimisticBase:
    """The pessimistic base of members' log-probabilities, shaped (members, rows, outcomes) or (members, outcomes)."""
    members = np.asarray(member_log_probs, dtype=np.float64)
    if members.ndim not in (2, 3) or members.shape[0] < 1:
        raise ValueError(f"member_log_probs must be (members, rows, outcomes) or (members, outcomes), got "
                         f"{members.shape}")
    if np.isnan(members).any() or (members == np.inf).any():
        raise ValueError("member log-probabilities must be finite or -inf, not NaN or +inf")
    lowest = members.min(axis=0)
    top = np.max(lowest, axis=-1, keepdims=True)
    if np.isneginf(top).any():
        raise ValueError("the members agree on no outcome at all: every outcome has probability 0 under some member")
    log_mass = np.log(np.sum(np.exp(lowest - top), axis=-1)) + top[..., 0]
    log_mass = np.minimum(log_mass, 0.0)  # members that agree exactly sum to 1 up to rounding
    return PessimisticBase(log_normalized=lowest - log_mass[..., None], floor=-log_mass,
                           disagreement=-np.expm1(log_mass))


@dataclass(frozen=True)
class Proposition1Example:
    """Three distributions over (reply, silence): the trusted policy τ never falls silent, the base β (an
    imitator of τ that cannot rule silence out) gives it probability δ, and the policy π is the KL-fixed
    mixture of β toward silence that spends ε (or, where ε buys more than that, is silent always). Both π and
    τ are within ε of β; π and τ are infinitely far apart, because π does what τ never does."""

    epsilon: float
    trusted: NDArray[np.float64]
    base: NDArray[np.float64]
    policy: NDArray[np.float64]
    kl_policy_base: float
    kl_trusted_base: float
    kl_policy_trusted: float


def proposition_1_example(epsilon: float = 0.5) -> Proposition1Example:
    """Cohen et al.'s Proposition 1 made concrete (see `Proposition1Example`) at budget `epsilon`.

    β gives silence δ = 1 − e^(−ε), the most that keeps KL(τ ‖ β) = −log(1 − δ) within ε. π moves toward
    silence until KL(π ‖ β) = ε; at ε = 0.5, β is silent 39% of the time and π 87%. From ε = ln 2 on, π is
    silent always and spends less than ε."""
    if not math.isfinite(epsilon) or epsilon <= 0:
        raise ValueError(f"epsilon must be a finite number of nats > 0, got {epsilon!r}")
    trusted = np.array([1.0, 0.0])
    delta = -math.expm1(-epsilon)
    base = np.array([1.0 - delta, delta])
    with np.errstate(divide="ignore"):
        solution = kl_fixed_mixture(np.log(base), np.array([-np.inf, 0.0]), epsilon)
        log_trusted = np.log(trusted)
    policy = np.exp(solution.log_mixture[0])
    return Proposition1Example(epsilon=epsilon, trusted=trusted, base=base, policy=policy,
                               kl_policy_base=float(solution.kl[0]),
                               kl_trusted_base=float(discrete_kl(log_trusted, np.log(base))),
                               kl_policy_trusted=float(discrete_kl(solution.log_mixture[0], log_trusted)))
