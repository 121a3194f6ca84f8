"""A learned proxy reward: a Bradley–Terry head on the policy's own hidden states, trained on pairs
of policy samples that the gold reward labelled.

This is the reward model of Gao et al. (2022) in miniature: it starts from the policy's
representation and sees a limited number of comparisons, so the number of pairs sets how far it
can be pushed before it stops tracking gold. The gold scorer reads the text with another encoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from goodhartlab.text.gold import fit_logistic
from goodhartlab.text.sampling import positions_from_mask
from goodhartlab.text.scorers import check_pairs


class PolicyFeatures:
    """Mean-pooled last hidden state of the policy over prompt + response, returned in float64
    whatever precision the model computes in."""

    def __init__(self, model: Any, tokenizer: Any, *, batch_size: int = 64) -> None:
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size

    def encode(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        import torch

        check_pairs(prompts, responses)
        texts = [p + r for p, r in zip(prompts, responses, strict=True)]
        chunks = []
        device = next(self.model.parameters()).device
        with torch.no_grad():
            for start in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(texts[start:start + self.batch_size], return_tensors="pt",
                                       padding=True).to(device)
                mask = batch["attention_mask"]
                positions = positions_from_mask(mask)
                # the transformer without its language-model head: the same last hidden state, a fifth less work
                hidden = self.model.base_model(**batch, position_ids=positions).last_hidden_state
                weights = mask.unsqueeze(-1).to(hidden.dtype)
                chunks.append(((hidden * weights).sum(1) / weights.sum(1).clamp(min=1)).float().cpu().numpy())
        width = self.model.config.hidden_size
        return np.concatenate(chunks).astype(np.float64) if chunks else np.zeros((0, width))


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
    """The head that comparisons labelled by gold give.

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


class LearnedReward:
    """A fitted head as a scorer of any response, for an optimizer that writes new ones (RL).

    The features come from `encoder`, which must be the model the head's training features came
    from, in the same precision, and stays frozen: the reward model does not move with the policy."""

    name = "learned"

    def __init__(self, head: BradleyTerryHead, encoder: PolicyFeatures, *, version: str) -> None:
        self.head, self.encoder, self.version = head, encoder, version

    def score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        return self.head.reward(self.encoder.encode(prompts, responses))
