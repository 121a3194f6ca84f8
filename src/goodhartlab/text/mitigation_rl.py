"""The RL half of the frontier: GRPO on a real policy against one trained reward-model mitigation, gold measured
on the same completions.

A run trains its reward model (Bradley–Terry, GRM, an ensemble under one objective, WARM; `reward_model`) on
`rl.proxy_pairs` gold-labelled comparisons of the policy's own samples of `rl.train_prompts` prompts, disjoint from
the ones RL trains on (the training pools of the learned proxy: `GRPOStudyConfig.learned_proxy_config`), then runs
GRPO against it (`goodhartlab.text.grpo.train_grpo`) with gold as a weight-0 reward. The run's seed draws the pairs,
the heads' initialization and the RL prompts and sampling, so the methods of one seed start from the same pairs.

`transform: par` wraps the reward model in PAR (Fu et al. 2025): the mean over the initial policy's answers to the
same prompt of σ(k·(r − r_ref)), references scored once. GRPO's advantage is the reward minus its group's mean
over its group's spread, so a per-prompt shift (centring) changes nothing in it; PAR, a bounded and non-linear
transform, does.

`rl_frontier_table` reads the runs of one method over seeds: gold per block of steps, the peak block and the drop
from it to the last block, with intervals that resample seeds and the steps within each block.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from goodhartlab.config import ConfigError, above, at_least, config_dict
from goodhartlab.results import RunResult
from goodhartlab.text.grpo import GRPOStudyConfig
from goodhartlab.text.proxies import LEARNED
from goodhartlab.text.reward_models import RewardModelConfig


def _say(message: str) -> None:
    print(f"[mitigation rl] {message}", file=sys.stderr, flush=True)


def _learned_rl() -> GRPOStudyConfig:
    return GRPOStudyConfig(proxy=LEARNED)


@dataclass
class RLMitigationConfig:
    """GRPO against one reward-model mitigation: the run, the reward model and the transform of its reward."""

    rl: GRPOStudyConfig = field(default_factory=_learned_rl)
    """The GRPO run (task, gold, policy, steps, beta, ...). Its proxy must be 'learned': proxy_pairs, train_prompts
    and train_pool say which gold-labelled comparisons the reward model trains on."""
    reward_model: RewardModelConfig = field(default_factory=RewardModelConfig)
    """The method (bt, grm, ensemble with its aggregation, warm) and how it trains."""
    transform: Literal["none", "par"] = "none"
    """none: the reward model's score is the reward; par: PAR over it, against the initial policy's answers."""
    par_references: int = 4
    """par: the initial policy's answers per prompt that a new answer is compared with."""
    par_k: float = 1.0
    """par: the sigmoid's steepness, k in σ(k·(r − r_ref))."""

    def __post_init__(self) -> None:
        rl = self.rl
        if rl.proxy != LEARNED:
            raise ConfigError("rl.proxy", f"must be 'learned', got {rl.proxy!r}: the proxy is the reward model "
                              "trained here on gold-labelled pairs (rl.proxy_pairs of rl.train_prompts)")
        if rl.log_dir is not None:
            raise ConfigError("rl.log_dir", "must be left out: the methods of a seed share the rl settings, so their "
                              "logs would share a folder; the summary keeps each run's log")
        if rl.steps % BLOCKS or rl.steps // BLOCKS < 2 * rl.gold_every:
            raise ConfigError("rl.steps", f"is {rl.steps}; the table reads the run in {BLOCKS} equal blocks with gold "
                              f"at least twice in each, so it must be a multiple of {BLOCKS} and at least "
                              f"{2 * BLOCKS * rl.gold_every} (gold_every {rl.gold_every})")
        at_least(self, "par_references", 1)
        above(self, "par_k", 0)
        if self.transform != "par":
            for name in ("par_references", "par_k"):
                if getattr(self, name) != getattr(RLMitigationConfig, name):
                    raise ConfigError(name, f"is set, but it is read only with transform: par (transform is "
                                      f"{self.transform!r})")

    @property
    def method(self) -> str:
        """The method's short name: bt, grm, ensemble-<aggregation>, warm, or par(<that>)."""
        rm = self.reward_model
        name = f"ensemble-{rm.aggregation}" if rm.method == "ensemble" else rm.method
        return f"par({name})" if self.transform == "par" else name


def _training_pools(cfg: RLMitigationConfig, seed: int) -> tuple[Any, Any, list[str], Any]:
    """(sampler, gold, training prompts, RL prompts): the learned proxy's training prompts (disjoint from RL's)."""
    from goodhartlab.text.grpo import grpo_prompts
    from goodhartlab.text.learned_proxy import split_prompts
    from goodhartlab.text.pools import PoolSampler
    from goodhartlab.text.tasks import resolve_task, task_gold

    bon = cfg.rl.learned_proxy_config()
    task = resolve_task(bon.task)
    sampler = PoolSampler(bon.sampling())
    train_prompts = split_prompts(bon, task, sampler, seed)[1]
    return sampler, task_gold(task, bon.gold), train_prompts, grpo_prompts(task, cfg.rl.prompts, seed, cfg.rl.policy)


def prepare_rl_pools(runs: Sequence[tuple[RLMitigationConfig, int]]) -> None:
    """Sample and gold-score the training pools (and PAR's references) once, before the runs start: the methods
    of one seed share them, and runs in parallel would otherwise sample them twice."""
    for cfg, seed in runs:
        sampler, gold, train_prompts, prompts = _training_pools(cfg, seed)
        sampler.scores(gold, train_prompts, cfg.rl.train_pool, seed + 1)
        if cfg.transform == "par":
            sampler.pools(prompts, cfg.par_references, seed + 2)


def training_pairs(cfg: RLMitigationConfig, sampler: Any, gold: Any, train_prompts: list[str], seed: int) -> list[Any]:
    """The run's gold-labelled comparisons: `rl.proxy_pairs` drawn by `seed` from the training pools (sampled with
    seed + 1, never the RL prompts), ties, repeats and empty answers passed over."""
    from goodhartlab.text.mitigation import draw_pairs, labelled_pairs
    from goodhartlab.text.pools import flatten_pools

    pools = sampler.pools(train_prompts, cfg.rl.train_pool, seed + 1)
    train_gold = sampler.scores(gold, train_prompts, cfg.rl.train_pool, seed + 1)
    indices = draw_pairs(train_prompts, pools, train_gold, cfg.rl.proxy_pairs, np.random.default_rng(seed),
                         field="rl.proxy_pairs")
    return labelled_pairs(flatten_pools(train_prompts, pools), train_gold, indices)


def rl_mitigation_study(cfg: RLMitigationConfig, seed: int) -> RunResult:
    """Train the reward model on draw `seed` of the pairs, then GRPO against it (or PAR over it), gold every step."""
    import torch

    from goodhartlab.rewards.scorer import Scorer
    from goodhartlab.rewards.transforms import PreferenceAsReward, ReferenceRewards
    from goodhartlab.text.grpo import train_grpo
    from goodhartlab.text.reward_models import train_reward_model

    torch.manual_seed(seed)
    sampler, gold, train_prompts, prompts = _training_pools(cfg, seed)
    pairs = training_pairs(cfg, sampler, gold, train_prompts, seed)
    began = time.perf_counter()
    model = train_reward_model(cfg.reward_model, pairs, seed=seed, source=f"seed {seed}'s training pools")
    train_seconds = time.perf_counter() - began
    accuracy = float(np.mean(model.accuracy(pairs)))
    _say(f"seed {seed}: {cfg.method} trained on {len(pairs)} pairs in {train_seconds:.0f} s "
         f"(training accuracy {accuracy:.3f})")
    proxy: Scorer = model
    if cfg.transform == "par":
        references = ReferenceRewards(model, dict(zip(prompts, sampler.pools(prompts, cfg.par_references, seed + 2),
                                                      strict=True)))
        references.prepare(prompts)
        proxy = PreferenceAsReward(references, k=cfg.par_k)
    result = train_grpo(cfg.rl, seed, prompts=prompts, proxy=proxy, gold=gold)
    result.summary.update({
        "config": config_dict(cfg), "method": cfg.method, "pairs": len(pairs),
        "reward_model_train_seconds": round(train_seconds, 2), "reward_model_train_accuracy": accuracy})
    return result


# -- a method over seeds ---------------------------------------------------------------------------------------------


BLOCKS = 6
"""The steps of a run are read in this many equal blocks: one step's gold is the mean over one batch, too noisy to
place a peak on by itself."""


@dataclass(frozen=True)
class RLFrontierRow:
    """One method over its seeds: gold per block of steps, the peak block and the fall from it to the last block.
    Intervals (95%) resample seeds and, within each block, its steps; the peak block is chosen on the mean
    curve after the fact, so the drop's interval is optimistic."""

    method: str
    seeds: int
    block_steps: int
    first: tuple[float, float, float]
    peak_block: int
    peak_kl: float
    """The peak block's median KL (nats per sequence), averaged over seeds; last_kl likewise."""
    at_peak: tuple[float, float, float]
    at_last: tuple[float, float, float]
    last_kl: float
    drop: tuple[float, float, float]
    proxy_rise: float
    """The reward's own rise from the first block to the last, in its units."""
    reward_model_seconds: float
    train_seconds: float


def block_steps(summary: Mapping[str, Any]) -> int:
    """Logged steps in each of a run's BLOCKS blocks (trailing steps that do not fill a block are not read)."""
    return len(summary["log"]["step"]) // BLOCKS


def step_blocks(summary: Mapping[str, Any], key: str) -> list[np.ndarray]:
    """A logged column of a run's summary (gold, kl, proxy) in BLOCKS equal blocks of steps, the steps where it
    was not logged left out (gold is logged every gold_every steps)."""
    values = np.array([np.nan if v is None else v for v in summary["log"][key]], dtype=float)
    size = len(values) // BLOCKS
    blocks = [block[np.isfinite(block)] for block in np.split(values[:size * BLOCKS], BLOCKS)]
    if size < 2 or min(len(block) for block in blocks) < 2:
        raise ValueError(f"{len(values)} logged steps with {key} in as few as {min(len(b) for b in blocks)} of a "
                         f"block: the table reads {BLOCKS} blocks with at least 2 values each")
    return blocks


def rl_frontier_table(summaries: Sequence[Mapping[str, Any]], *, resamples: int = 2000, seed: int = 0
                      ) -> RLFrontierRow:
    """The row of one method from its runs (one summary per seed)."""
    from goodhartlab.text.mitigation import percentile_interval as interval

    if not summaries:
        raise ValueError("no runs to summarize: run the study first")
    gold = [step_blocks(s, "gold") for s in summaries]  # seeds x blocks x steps
    block_means = np.array([[np.mean(b) for b in seed_blocks] for seed_blocks in gold])
    mean = block_means.mean(axis=0)
    peak = int(np.argmax(mean))
    rng = np.random.default_rng(seed)
    samples = np.empty((resamples, BLOCKS))
    for r in range(resamples):
        picked = rng.integers(0, len(gold), len(gold))
        samples[r] = [np.mean([np.mean(rng.choice(gold[s][b], len(gold[s][b]))) for s in picked])
                      for b in range(BLOCKS)]

    # a block's KL is its median: TRL's per-step estimate now and then logs a step tens of times its neighbours
    kl = np.array([[np.median(b) for b in step_blocks(s, "kl")] for s in summaries]).mean(axis=0)
    proxy = np.array([[np.mean(b) for b in step_blocks(s, "proxy")] for s in summaries]).mean(axis=0)

    return RLFrontierRow(
        method=str(summaries[0].get("method", "?")), seeds=len(summaries),
        block_steps=block_steps(summaries[0]),
        first=interval(samples[:, 0], mean[0]), peak_block=peak, peak_kl=float(kl[peak]),
        at_peak=interval(samples[:, peak], mean[peak]), at_last=interval(samples[:, -1], mean[-1]),
        last_kl=float(kl[-1]), drop=interval(samples[:, peak] - samples[:, -1], mean[peak] - mean[-1]),
        proxy_rise=float(proxy[-1] - proxy[0]),
        reward_model_seconds=float(np.mean([s.get("reward_model_train_seconds", np.nan) for s in summaries])),
        train_seconds=float(np.mean([s.get("train_seconds", np.nan) for s in summaries])))


RL_FRONTIER_HEADER = ["method", "seeds", "gold, first block", "peak block: steps", "KL at peak", "gold at peak",
                      "gold, last block", "KL, last block", "drop", "proxy rise", "reward model s", "GRPO s"]


def rl_frontier_cells(rows: Sequence[RLFrontierRow]) -> list[list[str]]:
    """The table's cells (RL_FRONTIER_HEADER's columns), as the report and the docs print them."""
    from goodhartlab.text.mitigation import with_interval as shown

    return [[row.method, str(row.seeds), shown(row.first),
             f"{row.peak_block * row.block_steps + 1}–{(row.peak_block + 1) * row.block_steps}", f"{row.peak_kl:.1f}",
             shown(row.at_peak), shown(row.at_last), f"{row.last_kl:.1f}", shown(row.drop), f"{row.proxy_rise:.3g}",
             f"{row.reward_model_seconds:.0f}", f"{row.train_seconds:.0f}"] for row in rows]


def rl_frontier_tables(summaries: Sequence[Mapping[str, Any]]) -> list[tuple[str, list[str], list[list[str]]]]:
    """The report's table of one method over its seeds."""
    title = (f"GRPO against the reward model over {len(summaries)} seed(s): gold in {BLOCKS} blocks of steps, "
             "95% intervals resampling seeds and steps")
    return [(title, RL_FRONTIER_HEADER, rl_frontier_cells([rl_frontier_table(summaries)]))]
