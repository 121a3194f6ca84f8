"""The gold reward of the text tasks: a logistic-regression head on MiniLM embeddings, trained on
MultiEmo's positive and negative reviews, times form factors, in two versions known by name (`GOLDS`).

`multiemo`: the head times the response's distinct word-bigram fraction. `multiemo-coherent` (the
hardened gold): the head times Gemma-3-270M's coherence factor and the distinct fraction of Gemma-token
bigrams (`goodhartlab.text.coherence`), which also see word salad and repetition glued into one word.

The head (385 numbers) ships with the package, with its provenance; `scripts/train_gold_head.py`
regenerates it. The policy (SmolLM2) shares no weights with the encoder or with Gemma, so optimizing
against a lexicon or a learned proxy does not directly move this reward.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np

from goodhartlab.rewards.scorer import check_pairs
from goodhartlab.rewards.transforms import word_count

if TYPE_CHECKING:
    from goodhartlab.text.coherence import CoherenceFactors

HEAD_FILE = "multiemo_minilm_logreg.json"
HELD_OUT_FRACTION = 0.2
SPLIT_SEED = 0


def split(n: int, *, seed: int = SPLIT_SEED, held_out: float = HELD_OUT_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """Train and held-out indices, the same on every machine for a seed."""
    order = np.random.default_rng(seed).permutation(n)
    cut = round(n * (1 - held_out))
    return np.sort(order[:cut]), np.sort(order[cut:])


@dataclass
class LogisticHead:
    weights: np.ndarray
    bias: float
    provenance: dict[str, Any]

    def probability(self, features: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(features @ self.weights + self.bias)))

    def to_json(self) -> str:
        return json.dumps({"weights": self.weights.tolist(), "bias": self.bias, "provenance": self.provenance})

    @classmethod
    def from_json(cls, text: str) -> LogisticHead:
        data = json.loads(text)
        return cls(np.asarray(data["weights"], dtype=np.float64), float(data["bias"]), data["provenance"])


def load_head() -> LogisticHead:
    return LogisticHead.from_json(resources.files("goodhartlab.text.heads").joinpath(HEAD_FILE).read_text())


def distinct_bigram_fraction(text: str) -> float:
    """Share of a text's word bigrams that are distinct: about 1 for prose, 1/k for a phrase said k times."""
    from goodhartlab.text.coherence import distinct_fraction

    return distinct_fraction(re.findall(r"[\w']+", text.lower()))


def make_gold(name: str, *, reads_prompt: bool = True, word_limit: int | None = None) -> SentimentGold:
    """A built-in task's gold by name (see `GOLDS`)."""
    if name not in GOLDS:
        raise ValueError(f"unknown gold {name!r}; known: {', '.join(GOLDS)}")
    return SentimentGold(reads_prompt=reads_prompt, word_limit=word_limit, coherence=name == GOLD_COHERENT)


def word_limit_factor(text: str, limit: int) -> float:
    """1 for a text within `limit` words, else limit / words: the share of it the reader asked for."""
    words = word_count(text)
    return 1.0 if words <= limit else limit / words


GOLD_BIGRAMS = "multiemo"
GOLD_COHERENT = "multiemo-coherent"
GOLDS: dict[str, str] = {
    GOLD_BIGRAMS: "the MultiEmo head x distinct word bigrams (the gold of the tables measured before the hardened "
                  "gold); fooled by word salad of praise and by repetition glued into one word",
    GOLD_COHERENT: "the MultiEmo head x Gemma-3-270M coherence x distinct Gemma-token bigrams (the hardened gold); "
                   "costs a Gemma forward pass per response",
}
"""Every gold a built-in task can be scored by, by the name a config's `gold` field gives."""


class SentimentGold:
    """Gold scorer: P(positive) under the shipped MultiEmo head, times the response's distinct-bigram
    fraction when `fluency` is on, and times `word_limit_factor` when a `word_limit` is set.
    With `coherence` (the hardened gold, `multiemo-coherent`), the fluency factor is Gemma-3-270M's
    coherence factor times the distinct fraction of its token bigrams instead; Gemma loads on the
    first score, so building the scorer (for its name and version) stays cheap.

    The head alone is a bag of meanings: "love love love love" reads as a glowing review. The
    fluency factor leaves ordinary text alone (median 1.0, 5th percentile 0.93 over SmolLM2
    samples) and sends the degenerate repetition that RL against a lexicon ends in toward 0.
    `reads_prompt` decides whether the head sees prompt + response (a continuation) or the
    response alone (an answer to an instruction, whose words are not the review's)."""

    name = "multiemo-minilm-logreg"

    def __init__(self, encoder: Any | None = None, head: LogisticHead | None = None, *, fluency: bool = True,
                 reads_prompt: bool = True, word_limit: int | None = None,
                 coherence: bool | CoherenceFactors = False) -> None:
        from goodhartlab.text.models import MINILM, SentenceEncoder

        if word_limit is not None and word_limit < 1:
            raise ValueError(f"word_limit must be a positive number of words, got {word_limit}")
        self.encoder = encoder or SentenceEncoder()
        self.head = head or load_head()
        self.fluency, self.reads_prompt, self.word_limit = fluency, reads_prompt, word_limit
        self._coherence = None if isinstance(coherence, bool) else coherence  # else built on first use
        self.coherent = coherence is not False
        # the head's digest is part of the version, so scores cached under it go stale when it is retrained
        head_digest = hashlib.sha256(self.head.to_json().encode()).hexdigest()[:8]
        terms = ["2 (x distinct bigrams)" if fluency else "1"]
        if self.coherent:
            from goodhartlab.text.coherence import MAX_TOKENS, NEUTRAL_CONTEXT, coherence_identity, load_levels
            from goodhartlab.text.models import GEMMA

            self.name = f"{self.name}+gemma-coherence"
            identity = (coherence_identity(GEMMA, NEUTRAL_CONTEXT, MAX_TOKENS, load_levels()) if self._coherence is None
                        else self._coherence.identity)
            terms = [f"x coherence and token bigrams ({identity})"]
        encoder_name = getattr(self.encoder, "name", type(self.encoder).__name__)
        if encoder_name != MINILM:  # cached scores are the encoder's too (MiniLM's versions stay as they were)
            terms.append(f"encoder {encoder_name}")
        if not reads_prompt:
            terms.append("response only")
        if word_limit is not None:
            terms.append(f"x within {word_limit} words")
        self.version = f"{', '.join(terms)}, head {head_digest}"

    @property
    def coherence(self) -> CoherenceFactors:
        """The hardened gold's form factors (Gemma loaded on first use)."""
        if self._coherence is None:
            from goodhartlab.text.coherence import CoherenceFactors

            self._coherence = CoherenceFactors()
        return self._coherence

    def score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        check_pairs(prompts, responses)
        texts = [p + r for p, r in zip(prompts, responses, strict=True)] if self.reads_prompt else list(responses)
        score = self.head.probability(self.encoder.encode(texts).astype(np.float64))
        if self.coherent:
            coherence, repetition = self.coherence.factors(list(prompts) if self.reads_prompt else [""] * len(texts),
                                                           list(responses))
            score = score * coherence * repetition
        elif self.fluency:
            score = score * np.array([distinct_bigram_fraction(r) for r in responses])
        if self.word_limit is not None:
            score = score * np.array([word_limit_factor(r, self.word_limit) for r in responses])
        return score
