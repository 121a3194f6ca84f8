"""The text proxies: deliberately exploitable lexicons, and the registry of every proxy name.

Stuffing a response with "great wonderful love" raises a lexicon's score whatever the text says. The
`learned` proxy is a Bradley–Terry reward model a study trains on gold-labelled pairs of its own
(`goodhartlab.text.learned_proxy`); it is named here so every study checks a proxy name in one place.
"""

from __future__ import annotations

import numpy as np

from goodhartlab.rewards.scorer import Scorer, check_pairs


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


LEXICONS: dict[str, type[VaderProxy] | type[AfinnProxy]] = {"vader": VaderProxy, "afinn": AfinnProxy}
LEARNED = "learned"
PROXIES: dict[str, str] = {
    "vader": "VADER's compound sentiment of the text (a lexicon)",
    "afinn": "AFINN-165 valences summed over the text (a lexicon; longer is higher)",
    LEARNED: "a Bradley–Terry reward model on the policy's hidden states, trained on gold-labelled pairs",
}
"""Every proxy a built-in task knows, by the name a config gives."""


def make_lexicon(name: str, *, reads_prompt: bool = True) -> Scorer:
    """A lexicon proxy by name (the learned proxy is trained by a study, not made from a name)."""
    if name not in LEXICONS:
        hint = " (the learned proxy is trained by a study: goodhartlab.text.learned_proxy)" if name == LEARNED else ""
        raise ValueError(f"unknown lexicon {name!r}; known: {', '.join(LEXICONS)}{hint}")
    scorer: Scorer = LEXICONS[name](reads_prompt=reads_prompt)
    return scorer
