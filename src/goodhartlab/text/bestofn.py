"""Best-of-n on a real policy: sample a pool per prompt, score proxy and gold, estimate the curves.

Pressure is the analytic best-of-n KL, log n - (n - 1)/n nats; the curves use the unbiased
estimator over the whole pool, with intervals over prompts, and the best-of-n law of Gao et al.
is fitted to gold with a bootstrap over prompts.

The proxy is a lexicon scorer or `learned`: a Bradley–Terry reward model on the policy's hidden
states, trained on `proxy_pairs` gold-labelled comparisons of policy samples to other prompts
(`goodhartlab.text.learned_proxy`). Pools, and their scores and features, come from the pool cache
(`goodhartlab.text.pools`), so the variants of a study (proxies, pair counts) score the same responses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from goodhartlab.config import ConfigError, above, at_least, config_dict, one_of
from goodhartlab.results import CurvePoints, RunResult
from goodhartlab.rewards.bradley_terry import available_pairs
from goodhartlab.text.gold import GOLD_BIGRAMS
from goodhartlab.text.models import SMOLLM2, Device
from goodhartlab.text.pools import PoolSampler, SampleDtype, SamplingSettings, word_counts
from goodhartlab.text.proxies import LEARNED, PROXIES
from goodhartlab.text.tasks import TASKS, check_gold, resolve_task, task_gold


@dataclass
class BestOfNConfig:
    """One best-of-n study. Fields hold what was given; values derived from them (the task's own response
    length, the learned proxy's prompt count) are properties, so a stored config reads as it was written."""

    task: str = "sentiment"
    """A built-in task (sentiment, short-review) or 'package.module:Class'."""
    gold: str = GOLD_BIGRAMS
    """The gold by name: multiemo (the MultiEmo head x word bigrams) or multiemo-coherent (the hardened gold: x
    Gemma-3-270M coherence and token bigrams, a Gemma pass per response); a user's task scores with its own."""
    proxy: str = "vader"
    """vader, afinn, or learned (a Bradley–Terry reward model trained on gold-labelled pairs)."""
    policy: str = SMOLLM2
    """An offline asset name, a local model folder, or a Hub name online."""
    prompts: int = 16
    """Prompts evaluated, each with its own pool."""
    pool: int = 64
    """Samples per prompt; the curve reaches the largest power of two in it."""
    max_new_tokens: int = 0
    """Response length cap in tokens; 0: the task's own (32 for sentiment, 96 for short-review)."""
    temperature: float = 1.0
    sample_batch_size: int = 128
    """Responses sampled per forward pass (part of a pool's identity: each batch has its own seed)."""
    sample_dtype: SampleDtype = "bfloat16"
    """The policy copy that samples and gives the learned proxy its features."""
    device: Device = "auto"
    """Where that copy runs: cpu, cuda, or auto (CUDA when torch sees one)."""
    proxy_pairs: int = 256
    """Learned proxy: gold-labelled comparisons it is trained on."""
    train_prompts: int = 0
    """Learned proxy: prompts (disjoint from the evaluated ones) its pairs come from; 0: one per pair."""
    train_pool: int = 2
    """Learned proxy: samples per training prompt (more than 2 draws several pairs per prompt)."""

    def __post_init__(self) -> None:
        task = resolve_task(self.task)
        if self.task in TASKS:  # a user's task knows its own proxies: task.proxy(name) says when one is unknown
            one_of(self, "proxy", PROXIES)
        check_gold(self)
        at_least(self, "prompts", 1)
        at_least(self, "pool", 2)
        at_least(self, "max_new_tokens", 0, why="0 means the task's own")
        at_least(self, "sample_batch_size", 1)
        above(self, "temperature", 0)
        if self.proxy == LEARNED:
            at_least(self, "proxy_pairs", 1)
            at_least(self, "train_prompts", 0, why="0 means one per pair")
            at_least(self, "train_pool", 2)
            if self.train_prompts == 0 and self.train_pool != 2:
                raise ConfigError("train_pool", f"is {self.train_pool}, but train_prompts is unset (one prompt per "
                                  "pair), which needs train_pool 2; set train_prompts too")
            if self.proxy_pairs > self.available_pairs:
                raise ConfigError("proxy_pairs", f"must be between 1 and train_prompts x C(train_pool, 2) = "
                                  f"{self.available_pairs} (train_prompts {self.training_prompts}, train_pool "
                                  f"{self.train_pool}); got {self.proxy_pairs}")
        needed = self.prompts + self.training_prompts
        if needed > task.prompt_count:
            fields, advice = f"prompts ({self.prompts})", "ask for fewer"
            if self.proxy == LEARNED:
                one_per_pair = ": one per pair" if self.train_prompts == 0 else ""
                fields += f" + train_prompts ({self.training_prompts}{one_per_pair})"
                advice += " (fewer proxy_pairs, or several pairs per prompt: train_pool > 2 with train_prompts set)"
            raise ConfigError("prompts", f"is too many: {fields} = {needed} is more than the {self.task} task's "
                              f"{task.prompt_count} prompts; {advice}")

    @property
    def response_tokens(self) -> int:
        """The response length sampled: max_new_tokens, or the task's own."""
        return self.max_new_tokens or resolve_task(self.task).max_new_tokens

    @property
    def training_prompts(self) -> int:
        """Prompts sampled to train the learned proxy, beyond the evaluated ones: none for a lexicon."""
        if self.proxy != LEARNED:
            return 0
        return self.train_prompts or self.proxy_pairs

    @property
    def available_pairs(self) -> int:
        """The distinct comparisons the learned proxy's training pools hold."""
        return available_pairs(self.training_prompts, self.train_pool)

    def derived(self) -> dict[str, Any]:
        """The values computed from the fields, part of a run's identity: a task whose own length
        changes gives new runs."""
        return {"response_tokens": self.response_tokens, "training_prompts": self.training_prompts}

    def sampling(self) -> SamplingSettings:
        return SamplingSettings(self.policy, self.response_tokens, self.temperature, self.sample_batch_size,
                                self.sample_dtype, self.device)

    def ns(self) -> list[int]:
        """Every power of two up to the pool: a larger pool reaches a larger KL, log n - (n - 1) / n."""
        return [2 ** k for k in range(self.pool.bit_length())]


def prepare_pools(runs: Sequence[tuple[BestOfNConfig, int]]) -> None:
    """Sample and gold-score (and for learned proxies, encode) what the runs will use, here and now, on
    all cores: variants run in parallel afterwards find it cached instead of each redoing the same work."""
    from goodhartlab.text.learned_proxy import split_prompts, training_data

    for cfg, seed in runs:
        task = resolve_task(cfg.task)
        gold = task_gold(task, cfg.gold)
        sampler = PoolSampler(cfg.sampling())
        prompts, train_prompts = split_prompts(cfg, task, sampler, seed)
        sampler.scores(gold, prompts, cfg.pool, seed)
        if cfg.proxy == LEARNED:
            sampler.features(prompts, cfg.pool, seed)
            training_data(cfg, sampler, train_prompts, gold, seed)


def bestofn_study(cfg: BestOfNConfig, seed: int) -> RunResult:
    """One best-of-n study: the curves over n, the fall after gold's peak, the law, an example pick."""
    from goodhartlab.measure.bestofn import bestofn_curve, fit_bestofn_law, peak_drop
    from goodhartlab.measure.scaling import FitError
    from goodhartlab.text.learned_proxy import learned_proxy_name, split_prompts, trained_head

    task = resolve_task(cfg.task)
    gold = task_gold(task, cfg.gold)
    sampler = PoolSampler(cfg.sampling())
    prompts, train_prompts = split_prompts(cfg, task, sampler, seed)
    pools = sampler.pools(prompts, cfg.pool, seed)
    if cfg.proxy == LEARNED:
        head = trained_head(cfg, sampler, train_prompts, gold, seed)
        proxy_scores, proxy_name = head.reward(sampler.features(prompts, cfg.pool, seed)), learned_proxy_name(cfg)
    else:
        proxy = task.proxy(cfg.proxy)
        proxy_scores = sampler.scores(proxy, prompts, cfg.pool, seed)
        proxy_name = f"{proxy.name} {proxy.version}"
    gold_scores = sampler.scores(gold, prompts, cfg.pool, seed)
    curve = bestofn_curve(proxy_scores, gold_scores, cfg.ns())
    summary: dict[str, Any] = {"config": config_dict(cfg), "proxy_scorer": proxy_name,
                               "gold_scorer": f"{gold.name} {gold.version}", "ns": curve.ns.tolist(),
                               "gold_se": curve.gold_se.tolist(), "proxy_se": curve.proxy_se.tolist(),
                               "words": bestofn_curve(proxy_scores, word_counts(pools), cfg.ns()).gold.tolist()}
    summary.update(peak_drop(curve, seed=seed).to_dict())
    try:
        summary["fit"] = fit_bestofn_law(curve).to_dict()
    except FitError as error:
        summary["fit_error"] = str(error)
    best = int(np.argmax(proxy_scores[0]))
    summary["example"] = {"prompt": prompts[0], "best_of_pool_by_proxy": pools[0][best]}
    return RunResult({"best-of-n": CurvePoints(curve.kl.tolist(), curve.proxy.tolist(), curve.gold.tolist(), "kl")},
                     summary)
