"""The learned proxy: a Bradley–Terry head on the policy's own hidden states, trained on pairs of policy
samples that the gold reward labelled.

This is the reward model of Gao et al. (2022) in miniature: it starts from the policy's
representation and sees a limited number of comparisons, so the number of pairs sets how far it
can be pushed before it stops tracking gold. The gold scorer reads the text with another encoder.
A best-of-n study selects with it, and a GRPO run optimizes the very same head (`learned_proxy`).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import numpy as np

from goodhartlab.rewards.bradley_terry import BradleyTerryHead, comparison_pairs, fit_bradley_terry
from goodhartlab.rewards.scorer import Scorer
from goodhartlab.text.models import PolicyFeatures
from goodhartlab.text.pools import PoolSampler
from goodhartlab.text.tasks import Task, policy_prompts, resolve_task, task_gold

if TYPE_CHECKING:
    from goodhartlab.text.bestofn import BestOfNConfig


class LearnedProxy:
    """A fitted head as a scorer of any response, for an optimizer that writes new ones (RL).

    The features come from `encoder`, which must be the model the head's training features came
    from, in the same precision, and stays frozen: the reward model does not move with the policy."""

    name = "learned"

    def __init__(self, head: BradleyTerryHead, encoder: PolicyFeatures, *, version: str) -> None:
        self.head, self.encoder, self.version = head, encoder, version

    def score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        return self.head.reward(self.encoder.encode(prompts, responses))


def _say(message: str) -> None:
    print(f"[learned proxy] {message}", file=sys.stderr, flush=True)


def learned_proxy_name(cfg: BestOfNConfig) -> str:
    """The proxy's name and version; it names the gold that labelled its pairs when that is not the default."""
    from goodhartlab.text.gold import GOLD_BIGRAMS

    labelled = "" if cfg.gold == GOLD_BIGRAMS else f", labelled by {cfg.gold}"
    return f"bradley-terry on policy features ({cfg.proxy_pairs} pairs{labelled})"


def split_prompts(cfg: BestOfNConfig, task: Task, sampler: PoolSampler, seed: int) -> tuple[list[str], list[str]]:
    """(evaluated prompts, the learned proxy's training prompts) as the policy reads them: disjoint,
    and the evaluated ones the same whatever the proxy, so every variant of a study scores the same pool."""
    prompts = task.prompts(cfg.prompts + cfg.training_prompts, seed=seed)  # within the task's count: see the config
    if task.chat:
        prompts = policy_prompts(task, prompts, sampler.tokenizer)
    return prompts[:cfg.prompts], prompts[cfg.prompts:]


def training_data(cfg: BestOfNConfig, sampler: PoolSampler, train_prompts: list[str], gold: Scorer,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(features, gold) of the learned proxy's training pools: sampled with seed + 1, so they are
    never the evaluated pool's samples."""
    return (sampler.features(train_prompts, cfg.train_pool, seed + 1),
            sampler.scores(gold, train_prompts, cfg.train_pool, seed + 1))


def fit_head(cfg: BestOfNConfig, train_features: np.ndarray, train_gold: np.ndarray,
             rng: np.random.Generator) -> BradleyTerryHead:
    """The Bradley–Terry head on `cfg.proxy_pairs` comparisons drawn with `rng`."""
    pairs = comparison_pairs(len(train_gold), cfg.train_pool, cfg.proxy_pairs, rng)
    return fit_bradley_terry(train_features, train_gold, pairs)


def trained_head(cfg: BestOfNConfig, sampler: PoolSampler, train_prompts: list[str], gold: Scorer,
                 seed: int) -> BradleyTerryHead:
    """The study's own head: its training data, and the draw of pairs of its seed."""
    head = fit_head(cfg, *training_data(cfg, sampler, train_prompts, gold, seed), np.random.default_rng(seed))
    _say(f"trained the Bradley–Terry proxy on {cfg.proxy_pairs} gold-labelled pairs")
    return head


def learned_proxy(cfg: BestOfNConfig, seed: int) -> LearnedProxy:
    """The learned proxy of a best-of-n study with this config and seed, as a scorer of new responses.

    Same training prompts, pools and draw of pairs, so an RL run against it optimizes the very
    reward model that study selects with; it reads responses through the policy copy that gave its
    training features, frozen."""
    task = resolve_task(cfg.task)
    sampler = PoolSampler(cfg.sampling())
    head = trained_head(cfg, sampler, split_prompts(cfg, task, sampler, seed)[1], task_gold(task, cfg.gold), seed)
    return LearnedProxy(head, PolicyFeatures(sampler.sampling_model, sampler.tokenizer),
                        version=learned_proxy_name(cfg))


def learned_proxy_draws(cfg: BestOfNConfig, seed: int, draws: int) -> dict[str, Any]:
    """A learned-proxy study refitted on `draws` independent draws of its training pairs (pair seeds
    0 .. draws - 1; draw `seed` is the study's own), on the same cached pools and features.

    One draw of a few hundred pairs is a noisy proxy: which features it keys on, and so whether its
    curve falls, changes from draw to draw. Returns the ns and, per draw, gold and the words of the
    proxy's pick at each n (arrays of shape (draws, len(ns))); a proxy trained on every pair its
    training pools hold has one draw."""
    from goodhartlab.measure.bestofn import bestofn_curve
    from goodhartlab.text.pools import word_counts

    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    if cfg.proxy_pairs == cfg.available_pairs:
        draws = 1  # every draw is all the pairs there are
    task = resolve_task(cfg.task)
    gold = task_gold(task, cfg.gold)
    sampler = PoolSampler(cfg.sampling())
    prompts, train_prompts = split_prompts(cfg, task, sampler, seed)
    gold_scores = sampler.scores(gold, prompts, cfg.pool, seed)
    words = word_counts(sampler.pools(prompts, cfg.pool, seed))
    features = sampler.features(prompts, cfg.pool, seed)  # read once for all draws
    training = training_data(cfg, sampler, train_prompts, gold, seed)
    gold_curves, word_curves = [], []
    for draw in range(draws):
        scores = fit_head(cfg, *training, np.random.default_rng(draw)).reward(features)
        gold_curves.append(bestofn_curve(scores, gold_scores, cfg.ns()).gold)
        word_curves.append(bestofn_curve(scores, words, cfg.ns()).gold)
    return {"ns": cfg.ns(), "gold": np.array(gold_curves), "words": np.array(word_curves)}
