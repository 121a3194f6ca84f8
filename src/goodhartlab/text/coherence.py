"""The coherence term of the hardened gold: how likely an independent language model finds a response.

The MultiEmo head reads meaning, not form: DPO's word salad of praise ("… every delicious delicious
amazing beauty love wearing") and GRPO's repetition glued into one word ("strongheartedhearted…")
both read as glowing reviews, and the word-bigram factor passes them (the bigrams are distinct, or
there is only one word). Gemma-3-270M, a model family no policy or proxy here shares, reads the
response after a neutral context; its mean log-likelihood per token, mapped to [0, 1] by two
calibrated levels, is the coherence factor, and the share of distinct *token* bigrams (Gemma's
tokens, which split a glued word into its repeats) is the repetition factor.

Likelihood alone does not see repetition: a language model copies what it has just read, so a
phrase said a fifth time is *more* likely than the first. That is why the repetition factor is
kept beside it rather than left to the likelihood.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

from goodhartlab.rewards.scorer import check_pairs
from goodhartlab.text.sampling import positions_from_mask

NEUTRAL_CONTEXT = "Here is a short text.\n\n"
MAX_TOKENS = 64  # the response tokens the likelihood reads
"""What the coherence model reads before the response: says nothing of tone, length or topic."""
CALIBRATION_FILE = "gemma_coherence_levels.json"


def distinct_fraction(units: list[Any]) -> float:
    """Share of a sequence's adjacent pairs that are distinct: about 1 for prose, 1/k for a phrase said k
    times; 1 for fewer than three units (too short to repeat a pair)."""
    pairs = list(itertools.pairwise(units))
    return len(set(pairs)) / len(pairs) if len(pairs) >= 2 else 1.0


@dataclass(frozen=True)
class CoherenceLevels:
    """How a mean log-likelihood per token (nats) maps to [0, 1]: 1 at `fluent` and above, 0 at `incoherent`
    and below, linear between. Calibrated once (scripts/calibrate_coherence.py) and shipped with its
    provenance, like the gold head."""

    fluent: float
    incoherent: float
    provenance: dict[str, Any]

    def __post_init__(self) -> None:
        if not self.fluent > self.incoherent:
            raise ValueError(f"the fluent level ({self.fluent}) must be above the incoherent one ({self.incoherent})")

    def factor(self, log_likelihood: np.ndarray) -> np.ndarray:
        span = self.fluent - self.incoherent
        factor: np.ndarray = np.clip((np.asarray(log_likelihood) - self.incoherent) / span, 0.0, 1.0)
        return factor

    def to_json(self) -> str:
        return json.dumps({"fluent": self.fluent, "incoherent": self.incoherent, "provenance": self.provenance},
                          indent=1)

    @classmethod
    def from_json(cls, text: str) -> CoherenceLevels:
        data = json.loads(text)
        return cls(float(data["fluent"]), float(data["incoherent"]), data["provenance"])


def load_levels() -> CoherenceLevels:
    return CoherenceLevels.from_json(resources.files("goodhartlab.text.heads").joinpath(CALIBRATION_FILE).read_text())


class CoherenceModel:
    """Per-token log-likelihoods of responses under a causal language model (Gemma-3-270M by default),
    each read after `context` (and, for a continuation, after its prompt).

    Only the response's positions go through the output layer (Gemma's vocabulary is 262,144 wide,
    so the logits would otherwise cost more than the transformer); responses are cut at
    `max_tokens`. Float32 throughout, so a score does not depend on the CPU's bfloat16 support."""

    def __init__(self, name: str | None = None, *, model: Any = None, tokenizer: Any = None,
                 context: str = NEUTRAL_CONTEXT, batch_size: int = 16, max_tokens: int = MAX_TOKENS,
                 fetch_if_missing: bool = True) -> None:
        from goodhartlab.text.models import GEMMA, load_policy

        if (model is None) != (tokenizer is None):
            raise ValueError("give both a model and its tokenizer, or neither (to load Gemma-3-270M)")
        self.name = name or (GEMMA if model is None else getattr(model.config, "name_or_path", "model"))
        if model is None:
            model, tokenizer = load_policy(GEMMA, fetch_if_missing=fetch_if_missing)
        self.model, self.tokenizer = model.eval(), tokenizer
        self.context, self.batch_size, self.max_tokens = context, batch_size, max_tokens

    def token_ids(self, response: str) -> list[int]:
        """The response's tokens as the model reads them after a context (no beginning-of-text token)."""
        ids: list[int] = self.tokenizer(response, add_special_tokens=False)["input_ids"][:self.max_tokens]
        return ids

    def log_likelihoods(self, contexts: list[str], responses: list[str]) -> tuple[np.ndarray, list[list[int]]]:
        """(mean log-likelihood per response token in nats, NaN for an empty response; the response tokens)."""
        import torch

        check_pairs(contexts, responses)
        targets = [self.token_ids(response) for response in responses]
        prefixes = [self.tokenizer(self.context + context)["input_ids"] for context in contexts]
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        means = np.full(len(responses), np.nan)
        device = next(self.model.parameters()).device
        order = sorted(range(len(responses)), key=lambda i: len(prefixes[i]) + len(targets[i]))  # less padding
        with torch.no_grad():
            for start in range(0, len(order), self.batch_size):
                batch = [i for i in order[start:start + self.batch_size] if targets[i]]
                if not batch:
                    continue
                rows = [prefixes[i] + targets[i] for i in batch]
                width = max(map(len, rows))
                ids = torch.tensor([[pad] * (width - len(row)) + row for row in rows], device=device)
                mask = torch.tensor([[0] * (width - len(row)) + [1] * len(row) for row in rows], device=device)
                keep = max(len(targets[i]) for i in batch)
                hidden = self.model.base_model(input_ids=ids, attention_mask=mask,
                                               position_ids=positions_from_mask(mask)).last_hidden_state
                # position t predicts token t + 1: the last `keep` tokens are predicted by the `keep` before them
                logits = self.model.get_output_embeddings()(hidden[:, -keep - 1:-1]).float()
                token_logp = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, -keep:, None])[..., 0]
                for row, i in enumerate(batch):
                    means[i] = float(token_logp[row, keep - len(targets[i]):].mean())
        return means, targets


def coherence_identity(name: str, context: str, max_tokens: int, levels: CoherenceLevels) -> str:
    """What the hardened gold's factors depend on, for its version: scores cached under one never serve another."""
    digest = hashlib.sha256(json.dumps([name, context, max_tokens, levels.to_json()]).encode()).hexdigest()[:8]
    return f"{name}, whole-response token bigrams, {digest}"


class CoherenceFactors:
    """The hardened gold's two form factors of each response: coherence (Gemma's likelihood through
    `CoherenceLevels`) and repetition (distinct Gemma-token bigrams). Both are 1 for an ordinary review."""

    def __init__(self, model: CoherenceModel | None = None, levels: CoherenceLevels | None = None) -> None:
        self.model = model or CoherenceModel()
        self.levels = levels or load_levels()

    @property
    def identity(self) -> str:
        return coherence_identity(str(self.model.name), self.model.context, self.model.max_tokens, self.levels)

    def factors(self, contexts: list[str], responses: list[str]) -> tuple[np.ndarray, np.ndarray]:
        log_likelihood, _ = self.model.log_likelihoods(contexts, responses)
        coherence = np.where(np.isnan(log_likelihood), 1.0, self.levels.factor(np.nan_to_num(log_likelihood)))
        # repetition reads every token (cheap): a loop that starts after the first `max_tokens` still counts
        whole = [self.model.tokenizer(response, add_special_tokens=False)["input_ids"] for response in responses]
        repetition = np.array([distinct_fraction(ids) for ids in whole])
        return coherence, repetition
