"""What the composite-reward environments (traffic, epidemic, glucose) share: a proxy/true pair is two
weightings of the same named reward terms, and Pan et al.'s action-resolution knob."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

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
