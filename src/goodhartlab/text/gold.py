"""The gold reward of the sentiment task: a logistic-regression head on MiniLM embeddings, trained on
MultiEmo's positive and negative reviews.

The head (385 numbers) ships with the package, with its provenance; `scripts/train_gold_head.py`
regenerates it. The policy (SmolLM2) shares no weights with the encoder, so optimizing against a
lexicon or a learned proxy does not directly move this reward.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

from goodhartlab.rewards.scorer import check_pairs

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
    words = re.findall(r"[\w']+", text.lower())
    bigrams = list(itertools.pairwise(words))
    return len(set(bigrams)) / len(bigrams) if len(bigrams) >= 2 else 1.0


def word_limit_factor(text: str, limit: int) -> float:
    """1 for a text within `limit` words, else limit / words: the share of it the reader asked for."""
    words = len(text.split())
    return 1.0 if words <= limit else limit / words


class SentimentGold:
    """Gold scorer: P(positive) under the shipped MultiEmo head, times the response's distinct-bigram
    fraction when `fluency` is on, and times `word_limit_factor` when a `word_limit` is set.

    The head alone is a bag of meanings: "love love love love" reads as a glowing review. The
    fluency factor leaves ordinary text alone (median 1.0, 5th percentile 0.93 over SmolLM2
    samples) and sends the degenerate repetition that RL against a lexicon ends in toward 0.
    `reads_prompt` decides whether the head sees prompt + response (a continuation) or the
    response alone (an answer to an instruction, whose words are not the review's)."""

    name = "multiemo-minilm-logreg"

    def __init__(self, encoder: Any | None = None, head: LogisticHead | None = None, *, fluency: bool = True,
                 reads_prompt: bool = True, word_limit: int | None = None) -> None:
        from goodhartlab.text.models import MINILM, SentenceEncoder

        if word_limit is not None and word_limit < 1:
            raise ValueError(f"word_limit must be a positive number of words, got {word_limit}")
        self.encoder = encoder or SentenceEncoder()
        self.head = head or load_head()
        self.fluency, self.reads_prompt, self.word_limit = fluency, reads_prompt, word_limit
        # the head's digest is part of the version, so scores cached under it go stale when it is retrained
        head_digest = hashlib.sha256(self.head.to_json().encode()).hexdigest()[:8]
        terms = ["2 (x distinct bigrams)" if fluency else "1"]
        encoder_name = getattr(self.encoder, "name", type(self.encoder).__name__)
        if encoder_name != MINILM:  # cached scores are the encoder's too (MiniLM's versions stay as they were)
            terms.append(f"encoder {encoder_name}")
        if not reads_prompt:
            terms.append("response only")
        if word_limit is not None:
            terms.append(f"x within {word_limit} words")
        self.version = f"{', '.join(terms)}, head {head_digest}"

    def score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        check_pairs(prompts, responses)
        texts = [p + r for p, r in zip(prompts, responses, strict=True)] if self.reads_prompt else list(responses)
        score = self.head.probability(self.encoder.encode(texts).astype(np.float64))
        if self.fluency:
            score = score * np.array([distinct_bigram_fraction(r) for r in responses])
        if self.word_limit is not None:
            score = score * np.array([word_limit_factor(r, self.word_limit) for r in responses])
        return score
