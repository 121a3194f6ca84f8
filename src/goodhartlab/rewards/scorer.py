"""The scorer contract every proxy and gold reward of text honours, and the one check of its scores.

A scorer maps (prompts, responses) to one number per response, batched and deterministic, with a
name and a version (cached scores are keyed by both). Proxies and gold are both scorers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray


@runtime_checkable
class Scorer(Protocol):
    name: str
    version: str

    def score(self, prompts: list[str], responses: list[str]) -> np.ndarray: ...


def check_pairs(prompts: Sequence[str], responses: Sequence[str]) -> None:
    """Every scorer's first check: one response per prompt."""
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")


class ScoreError(ValueError):
    """A scorer returned the wrong shape or a non-finite score; the message names the scorer and response."""


def checked_scores(scorer: Scorer, prompts: list[str], responses: list[str], *, role: str = "",
                   where: str = "") -> NDArray[np.float64]:
    """`scorer`'s scores of the responses as float64, or a ScoreError: one score per response, every one
    finite. NaN or infinite rewards are reported, never averaged. `role` ("proxy", "gold") and `where`
    ("at step 12") make the message say which scorer failed and when."""
    scores = np.asarray(scorer.score(prompts, responses), dtype=np.float64)
    label = f"the {role} scorer {scorer.name!r}" if role else f"scorer {scorer.name!r}"
    place = f" {where}" if where else ""
    if scores.shape != (len(responses),):
        raise ScoreError(f"{label} returned shape {scores.shape} for {len(responses)} responses{place}; it must "
                         "return one score per response")
    bad = ~np.isfinite(scores)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ScoreError(f"{label} returned {int(bad.sum())} non-finite score(s) of {scores.size}{place} (first: "
                         f"{scores[first]} for response {first}, {responses[first][:60]!r}); NaN or infinite "
                         "rewards are reported, never averaged: fix the scorer")
    return scores
