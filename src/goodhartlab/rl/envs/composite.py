"""What the composite-reward environments (traffic, epidemic, glucose) share: a proxy/true pair is two
weightings of the same named reward terms, chosen by the `pair` argument of one core class, and Pan et
al.'s action-resolution knob."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from goodhartlab.rl.batched import BatchedCore

METADATA_KEYS = ("misspecification", "proxy_reward", "true_reward", "description")


def pair_metadata(pairs: Mapping[str, Mapping[str, Any]], pair: str) -> dict[str, Any]:
    """The contract's metadata of one proxy/true pair, from a module's PAIRS table."""
    spec = pairs[pair]
    return {key: spec[key] for key in METADATA_KEYS}


def weighted(terms: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """A reward as a weighted sum of named terms (the weights of the proxy, or of the true reward)."""
    return sum((w * terms[name] for name, w in weights.items()), start=np.zeros_like(next(iter(terms.values()))))


def quantize(actions: np.ndarray, resolution: float) -> np.ndarray:
    """Pan's disc_action_noise: round actions to a grid of step `resolution` (0 leaves them alone)."""
    return actions if resolution <= 0 else np.round(actions / resolution) * resolution


class CompositeCore(BatchedCore):
    """A core whose proxy and true reward weight the same named terms, as one row of `PAIRS` says.

    The pair is an argument, not a subclass, so each registered variant is the one class with
    `{"pair": ...}` (Gymnasium's way); the instance's `metadata` is that pair's.
    """

    PAIRS: ClassVar[Mapping[str, Mapping[str, Any]]]
    """Pair name -> misspecification, proxy and true weights ("proxy", "true") and the rewards in words."""

    def __init__(self, num_envs: int, pair: str) -> None:
        super().__init__(num_envs)
        if pair not in self.PAIRS:
            raise ValueError(f"{type(self).__name__} has no pair {pair!r}; the pairs are {', '.join(self.PAIRS)}")
        self.pair = pair
        self.metadata = pair_metadata(self.PAIRS, pair)
        self.proxy_weights: dict[str, float] = dict(self.PAIRS[pair]["proxy"])
        self.true_weights: dict[str, float] = dict(self.PAIRS[pair]["true"])

    def rewards(self, terms: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """The proxy, the true reward, and the proxy's named terms (for `info["reward_terms"]`)."""
        proxy = np.asarray(weighted(terms, self.proxy_weights), dtype=np.float64)
        true = np.asarray(weighted(terms, self.true_weights), dtype=np.float64)
        return proxy, true, {name: terms[name] for name in self.proxy_weights}
