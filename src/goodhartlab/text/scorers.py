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


class _LexiconProxy:
    """A lexicon read over prompt + response (a continuation), or over the response alone (an answer
    to an instruction, whose own words would otherwise count toward every answer)."""

    name: str
    base_version: str

    def __init__(self, *, reads_prompt: bool = True) -> None:
        self.reads_prompt = reads_prompt
        self.version = self.base_version if reads_prompt else f"{self.base_version}, response only"

    def texts(self, prompts: list[str], responses: list[str]) -> list[str]:
        check_pairs(prompts, responses)
        return [p + r for p, r in zip(prompts, responses, strict=True)] if self.reads_prompt else list(responses)


class VaderProxy(_LexiconProxy):
    """VADER's compound sentiment (-1..1) of the text (Hutto & Gilbert 2014, vaderSentiment 3.3.2)."""

    name = "vader"
    base_version = "3.3.2"

    def __init__(self, *, reads_prompt: bool = True) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        super().__init__(reads_prompt=reads_prompt)
        self._analyzer = SentimentIntensityAnalyzer()

    def score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        return np.array([self._analyzer.polarity_scores(text)["compound"] for text in self.texts(prompts, responses)])


class AfinnProxy(_LexiconProxy):
    """AFINN-165 word valences summed over the text (Nielsen 2011): a sum, so a longer text of the
    same tone scores higher."""

    name = "afinn"
    base_version = "165"

    def __init__(self, *, reads_prompt: bool = True) -> None:
        from afinn import Afinn

        super().__init__(reads_prompt=reads_prompt)
        self._afinn = Afinn()

    def score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        return np.array([self._afinn.score(text) for text in self.texts(prompts, responses)], dtype=float)


PROXIES: dict[str, type[VaderProxy] | type[AfinnProxy]] = {"vader": VaderProxy, "afinn": AfinnProxy}


def make_proxy(name: str, *, reads_prompt: bool = True) -> Scorer:
    if name not in PROXIES:
        raise ValueError(f"unknown proxy {name!r}; known: {', '.join(PROXIES)}")
    scorer: Scorer = PROXIES[name](reads_prompt=reads_prompt)
    return scorer
