"""Text scorers: `score(prompts, responses) -> numpy array`, batched, deterministic, named and versioned.

Proxies and gold are both scorers. The lexicon proxies are deliberately exploitable: stuffing a
response with "great wonderful love" raises them whatever the text says.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Scorer(Protocol):
    name: str
    version: str

    def score(self, prompts: list[str], responses: list[str]) -> np.ndarray: ...


def check_pairs(prompts: list[str], responses: list[str]) -> None:
    """Every scorer's first check: one response per prompt."""
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")


class VaderProxy:
    """VADER's compound sentiment (-1..1) of the response (Hutto & Gilbert 2014, vaderSentiment 3.3.2)."""

    name = "vader"
    version = "3.3.2"

    def __init__(self) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self._analyzer = SentimentIntensityAnalyzer()

    def score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        check_pairs(prompts, responses)
        return np.array([self._analyzer.polarity_scores(p + r)["compound"] for p, r in zip(prompts, responses,
                                                                                            strict=True)])


class AfinnProxy:
    """AFINN-165 word valences summed over the text (Nielsen 2011)."""

    name = "afinn"
    version = "165"

    def __init__(self) -> None:
        from afinn import Afinn

        self._afinn = Afinn()

    def score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        check_pairs(prompts, responses)
        return np.array([self._afinn.score(p + r) for p, r in zip(prompts, responses, strict=True)], dtype=float)


PROXIES: dict[str, type[VaderProxy] | type[AfinnProxy]] = {"vader": VaderProxy, "afinn": AfinnProxy}


def make_proxy(name: str) -> Scorer:
    if name not in PROXIES:
        raise ValueError(f"unknown proxy {name!r}; known: {', '.join(PROXIES)}")
    scorer: Scorer = PROXIES[name]()
    return scorer
