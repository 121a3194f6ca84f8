"""KL divergence to the reference policy, always reported in nats per sequence.

Per-token estimators follow Schulman, "Approximating KL divergence" (2020): for tokens sampled
from the policy, with log r = log π_ref − log π,
  k1 = −log r            (unbiased, can go negative on a batch)
  k2 = ½ (log r)²        (biased, low variance; Coste et al. 2023 plot with it)
  k3 = (r − 1) − log r   (unbiased, always ≥ 0; TRL's GRPO logs its per-token mean)
Summing a per-token estimator over the tokens of a sequence gives nats per sequence.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from goodhartlab.measure.validation import as_finite, as_positive_ints

Estimator = Literal["k1", "k2", "k3"]
KLUnit = Literal["nats_per_sequence", "nats_per_token", "bits_per_sequence", "bits_per_token"]
KL_UNITS: tuple[KLUnit, ...] = ("nats_per_sequence", "nats_per_token", "bits_per_sequence",
                                "bits_per_token")


def token_kl(logp_policy: ArrayLike, logp_ref: ArrayLike, estimator: Estimator = "k1") -> NDArray[np.float64]:
    """Per-token KL estimates from the log-probabilities of the sampled tokens."""
    policy = as_finite(logp_policy, "logp_policy")
    ref = as_finite(logp_ref, "logp_ref")
    if policy.shape != ref.shape:
        raise ValueError(f"logp_policy has shape {policy.shape} but logp_ref has {ref.shape}; "
                         "pass the log-probabilities of the same sampled tokens under both models")
    log_ratio = ref - policy
    if estimator == "k1":
        return -log_ratio
    if estimator == "k2":
        return 0.5 * log_ratio**2
    if estimator == "k3":
        return np.expm1(log_ratio) - log_ratio
    raise ValueError(f"estimator must be 'k1', 'k2' or 'k3', got {estimator!r}")


def sequence_kl(logp_policy: ArrayLike, logp_ref: ArrayLike, mask: ArrayLike | None = None,
                estimator: Estimator = "k1") -> NDArray[np.float64]:
    """KL in nats per sequence: per-token estimates summed over the last axis, padding masked out."""
    per_token = token_kl(logp_policy, logp_ref, estimator)
    if mask is not None:
        weights = np.asarray(mask, dtype=np.float64)
        if weights.shape != per_token.shape:
            raise ValueError(f"mask has shape {weights.shape} but the log-probabilities have "
                             f"{per_token.shape}")
        per_token = per_token * weights
    return per_token.sum(axis=-1)


def discrete_kl(log_p: ArrayLike, log_q: ArrayLike) -> NDArray[np.float64]:
    """Exact KL(p ‖ q) in nats between discrete distributions given as log-probabilities, over the last axis.

    Outcomes p rules out (log p = −inf) contribute 0; an outcome p allows and q rules out makes the KL
    infinite. q may be sub-normalized (a pessimistic base that keeps some mass back to ask for help):
    KL(p ‖ q) is then KL to q's normalization plus −log Σq, never less. Rounding below 0 is returned as 0."""
    lp, lq = np.asarray(log_p, dtype=np.float64), np.asarray(log_q, dtype=np.float64)
    if lp.shape != lq.shape:
        raise ValueError(f"log_p has shape {lp.shape} but log_q has {lq.shape}; pass the same outcomes for both")
    if np.isnan(lp).any() or np.isnan(lq).any() or (lp == np.inf).any() or (lq == np.inf).any():
        raise ValueError("log-probabilities must be finite numbers or -inf (an outcome ruled out), not NaN or +inf")
    p = np.exp(lp)
    with np.errstate(invalid="ignore"):
        terms = np.where(p > 0, p * (lp - lq), 0.0)
    return np.maximum(terms.sum(axis=-1), 0.0)


def to_nats_per_sequence(value: ArrayLike, unit: KLUnit, mean_length: ArrayLike | None = None) -> NDArray[np.float64]:
    """Convert a logged KL figure to nats per sequence, the one unit goodhartlab uses.

    Per-token figures (TRL's GRPO and RLOO log a masked per-token mean of k3 or k1) need the
    mean completion length of the same batch: the batch's token mean times its mean length is
    exactly the mean over sequences of the per-sequence sum. k1 and k3 estimate the same KL, so
    no conversion between estimators is needed beyond the unit.
    """
    kl = as_finite(value, "kl")
    if unit not in KL_UNITS:
        raise ValueError(f"unknown KL unit {unit!r}; choose one of {', '.join(KL_UNITS)}")
    if unit.startswith("bits"):
        kl = kl * np.log(2.0)
    if unit.endswith("per_token"):
        if mean_length is None:
            raise ValueError(f"a KL logged in {unit} needs the mean completion length (tokens) "
                             "of the same batch to become nats per sequence")
        length = as_finite(mean_length, "mean_length")
        if np.any(length < 0):
            raise ValueError("mean_length must be >= 0")
        kl = kl * length
    return kl


def kl_bestofn(n: ArrayLike) -> NDArray[np.float64]:
    """Analytic KL of best-of-n to the base policy: log n − (n − 1)/n (Stiennon et al. 2020, App. G.3).

    Exact when samples never repeat; an upper bound otherwise (see `kl_bestofn_exact`).
    """
    ns = as_positive_ints(n, "n").astype(np.float64)
    result = np.log(ns) - (ns - 1.0) / ns
    return result if np.ndim(n) else result[0]


def kl_bestofn_exact(probabilities: ArrayLike, rewards: ArrayLike, n: int) -> float:
    """Exact KL of best-of-n over a discrete distribution of outcomes.

    Outcomes with equal reward form a tied block; ties are broken uniformly at random, so the
    best-of-n distribution inside a block stays proportional to the base probabilities. With the
    blocks sorted by reward and F the cumulative probability, the block gets F_hi^n − F_lo^n.
    """
    p = as_finite(probabilities, "probabilities", ndim=1)
    r = as_finite(rewards, "rewards", ndim=1)
    if p.shape != r.shape:
        raise ValueError(f"probabilities has {p.size} entries but rewards has {r.size}")
    if np.any(p < 0) or not np.isclose(p.sum(), 1.0, rtol=1e-9, atol=1e-12):
        raise ValueError(f"probabilities must be >= 0 and sum to 1 (they sum to {p.sum():.12g})")
    (count,) = as_positive_ints(n, "n")
    keep = p > 0
    p, r = p[keep], r[keep]
    order = np.argsort(r, kind="stable")
    p, r = p[order], r[order]
    block_end = np.r_[r[1:] != r[:-1], True]
    block_mass = np.add.reduceat(p, np.flatnonzero(np.r_[True, block_end[:-1]]))
    upper = np.minimum(np.cumsum(block_mass), 1.0)
    lower = np.r_[0.0, upper[:-1]]
    # F_hi^n − F_lo^n, computed in logs so large n and F near 1 keep their precision.
    log_upper = np.log(upper)
    with np.errstate(divide="ignore"):
        log_lower = np.log(lower)
    bon_mass = np.exp(count * log_upper) * -np.expm1(count * (log_lower - log_upper))
    nonzero = bon_mass > 0
    return float(np.sum(bon_mass[nonzero] * np.log(bon_mass[nonzero] / block_mass[nonzero])))


def empirical_distribution(outcomes: ArrayLike, rewards: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Probabilities and rewards of the distinct outcomes in a sample (repeats counted).

    Feed the result to `kl_bestofn_exact` to get the best-of-n KL of a policy whose samples repeat.
    """
    keys = np.asarray(outcomes)
    values = as_finite(rewards, "rewards", ndim=1)
    if keys.shape[0] != values.shape[0]:
        raise ValueError(f"{keys.shape[0]} outcomes but {values.shape[0]} rewards")
    unique, first, counts = np.unique(keys, return_index=True, return_counts=True, axis=0)
    del unique
    return counts / counts.sum(), values[first]
