"""Bradley–Terry reward heads: a linear reward on standardized features, fitted to labelled comparisons.

The reward model of Gao et al. (2022) in miniature, for any features (a policy's hidden states, a
sentence encoder's embeddings): the number of comparisons sets how far it can be pushed before it
stops tracking the labeller. NumPy and SciPy only; features come from wherever the caller has them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize


def fit_logistic(features: np.ndarray, labels: np.ndarray, *, l2: float = 1e-3) -> tuple[np.ndarray, float]:
    """L2-regularized logistic regression by L-BFGS (labels 0/1); the bias is not penalized."""
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = params[:-1], params[-1]
        z = x @ w + b
        nll = np.mean(np.logaddexp(0.0, z) - y * z) + 0.5 * l2 * w @ w
        residual = (1.0 / (1.0 + np.exp(-z)) - y) / len(y)
        return float(nll), np.append(x.T @ residual + l2 * w, residual.sum())

    result = minimize(loss, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B")
    return result.x[:-1], float(result.x[-1])


def available_pairs(prompts: int, pool: int) -> int:
    """The distinct comparisons `prompts` pools of `pool` responses hold: prompts x C(pool, 2)."""
    return prompts * pool * (pool - 1) // 2


def comparison_pairs(prompts: int, pool: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` distinct comparisons (prompt, a, b), a != b, both responses to the same prompt."""
    available = available_pairs(prompts, pool)
    if count > available:
        raise ValueError(f"asked for {count} comparisons but {prompts} prompts with pools of {pool} give only "
                         f"{available}; lower the number of pairs or sample more training responses")
    upper = np.triu_indices(pool, k=1)
    chosen = rng.choice(available, size=count, replace=False)
    prompt, pair = np.divmod(chosen, len(upper[0]))
    return np.stack([prompt, upper[0][pair], upper[1][pair]], axis=1)


@dataclass(frozen=True)
class BradleyTerryHead:
    """A linear reward on standardized features; `reward` is the logit of 'this one is better'
    up to the pair's other side."""

    weights: np.ndarray
    mean: np.ndarray
    scale: np.ndarray

    def reward(self, features: np.ndarray) -> np.ndarray:
        rewards: np.ndarray = ((features - self.mean) / self.scale) @ self.weights
        return rewards


def fit_bradley_terry(features: np.ndarray, gold: np.ndarray, pairs: np.ndarray, *, l2: float = 1e-2
                      ) -> BradleyTerryHead:
    """The head that comparisons labelled by `gold` give.

    `features` is (prompts, pool, width) and `gold` (prompts, pool); each comparison enters in both
    orders, so the logistic fit has no reason for a bias and the reward is antisymmetric in the pair.
    """
    flat = features.reshape(-1, features.shape[-1])
    mean, scale = flat.mean(0), flat.std(0) + 1e-6
    standardized = (features - mean) / scale
    prompt, a, b = pairs.T
    difference = standardized[prompt, a] - standardized[prompt, b]
    a_wins = (gold[prompt, a] > gold[prompt, b]).astype(float)
    weights, _ = fit_logistic(np.concatenate([difference, -difference]), np.concatenate([a_wins, 1 - a_wins]),
                              l2=l2)
    return BradleyTerryHead(weights, mean, scale)
