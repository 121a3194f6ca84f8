"""One frontier for the reward-model mitigations: every method trained on the same gold-labelled pairs, selecting
from the same best-of-n pools, scored by the same gold.

The pools are a best-of-n study's (`pool_seed` picks its prompts and samples, so every run of a spec reads the
same ones from the pool cache); the run's seed is the reward models' draw: which `pairs` comparisons of the
training pools they learn from, and their heads' initialization and data order. In one run every method trains
on that draw: Bradley–Terry, BT with TRL's centring term, GRM, an ensemble of k scored by its mean, worst case
and uncertainty-weighted objective (one trained ensemble, three objectives), WARM of k, and BT capped at a
quantile of its rewards on its training answers. The backbone's frozen trunk reads every text once and all of
them share it (`goodhartlab.text.reward_models`).

Best-of-n is unchanged by any increasing transform of one prompt's rewards, so centring and PAR select exactly
what their reward model selects; they are compared where they can differ, in RL. Capping is not strictly
increasing: every answer above the cap ties, and best-of-n picks among them at random.

`frontier_table` reads the runs of a study (one per draw) and gives the summary the docs and the report show:
per method, gold at the peak n and at the largest n, the drop between them, its gold at the largest n against
Bradley–Terry's and, where BT's own drop is established (its interval above 0), the reduction of that drop; the
intervals resample both draws and prompts, the same resamples for every method.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from goodhartlab.config import ConfigError, above, at_least, config_dict, parse_config
from goodhartlab.measure.kl import kl_bestofn
from goodhartlab.results import CurvePoints, RunResult
from goodhartlab.rewards.bradley_terry import available_pairs, comparison_pairs
from goodhartlab.text.gold import GOLD_BIGRAMS
from goodhartlab.text.models import SMOLLM2

BASELINE = "bt"
FRONTIER_METHODS: dict[str, str] = {
    "bt": "Bradley–Terry",
    "bt-centred": "BT + centring (TRL's coefficient)",
    "bt-capped": "BT capped at a quantile of its training rewards",
    "grm": "GRM (language-model regularizer)",
    "ensemble-mean": "ensemble of k, mean",
    "ensemble-worst": "ensemble of k, worst case",
    "ensemble-uncertainty": "ensemble of k, mean − λ·variance",
    "warm": "WARM of k (weights averaged)",
}
"""The rows of the frontier, in the order they are trained and shown."""


def _say(message: str) -> None:
    print(f"[mitigation] {message}", file=sys.stderr, flush=True)


@dataclass
class MitigationConfig:
    """The best-of-n frontier of the reward-model methods: the pools (a best-of-n study's) and how the models train."""

    task: str = "short-review"
    """A built-in task (sentiment, short-review) or 'package.module:Class'."""
    gold: str = GOLD_BIGRAMS
    """The gold that labels the training pairs and scores the picks (multiemo, or multiemo-coherent)."""
    policy: str = SMOLLM2
    """The policy whose samples fill the pools."""
    prompts: int = 16
    """Evaluated prompts, each with its own pool."""
    pool: int = 128
    """Samples per evaluated prompt; the curve reaches the largest power of two in it."""
    max_new_tokens: int = 0
    """Response length cap in tokens; 0: the task's own."""
    train_prompts: int = 16
    """Prompts (disjoint from the evaluated ones) the training pairs come from."""
    train_pool: int = 32
    """Samples per training prompt; pairs compare two samples of one prompt."""
    pairs: int = 256
    """Gold-labelled comparisons every method trains on (the same ones, drawn by the run's seed)."""
    pool_seed: int = 0
    """The best-of-n study seed whose prompts and pools every run reads."""
    backbone: str = SMOLLM2
    """The reward models' backbone (an offline asset name, a local folder or a Hub name)."""
    members: int = 4
    """k of the ensemble and of WARM."""
    train_layers: int = 1
    """Top blocks each model trains (the rest is the shared trunk): one, as in the accuracy table of docs/text.md,
    which keeps a draw of every method to minutes on 2 cores."""
    epochs: int = 2
    learning_rate: float = 1e-4
    batch_size: int = 8
    center_rewards_coefficient: float = 0.01
    """bt-centred: TRL's recommended value."""
    uncertainty_weight: float = 0.5
    """ensemble-uncertainty: λ."""
    cap_quantile: float = 0.9
    """bt-capped: the cap is this quantile of BT's rewards on its own training answers."""
    max_length: int = 256

    def __post_init__(self) -> None:
        at_least(self, "pairs", 1)
        at_least(self, "train_prompts", 1)
        at_least(self, "train_pool", 2)
        at_least(self, "members", 2, why="an ensemble or WARM of one member is BT")
        if not 0 < self.cap_quantile < 1:
            raise ConfigError("cap_quantile", f"must lie strictly between 0 and 1, got {self.cap_quantile}")
        above(self, "learning_rate", 0)
        held = available_pairs(self.train_prompts, self.train_pool)
        if self.pairs > held:
            raise ConfigError("pairs", f"is {self.pairs}, but train_prompts x C(train_pool, 2) = {held} comparisons "
                              "exist; lower pairs or raise train_prompts or train_pool")
        self.bestofn()  # the pools' own rules (prompt counts, pool size, gold) named by the same fields
        for family in ("bt", "grm", "ensemble", "warm"):
            self.reward_model(family)

    def bestofn(self) -> Any:
        """The best-of-n study whose pools, training pools and gold this frontier uses."""
        from goodhartlab.text.bestofn import BestOfNConfig

        return parse_config(BestOfNConfig, {
            "task": self.task, "gold": self.gold, "policy": self.policy, "prompts": self.prompts, "pool": self.pool,
            "max_new_tokens": self.max_new_tokens, "proxy": "learned", "proxy_pairs": self.pairs,
            "train_prompts": self.train_prompts, "train_pool": self.train_pool})

    def reward_model(self, family: str, **overrides: Any) -> Any:
        """The reward-model config of one family (bt, grm, ensemble, warm) with this frontier's settings."""
        from goodhartlab.text.reward_models import RewardModelConfig

        values: dict[str, Any] = {
            "method": family, "backbone": self.backbone, "members": self.members, "train_layers": self.train_layers,
            "epochs": self.epochs, "learning_rate": self.learning_rate, "batch_size": self.batch_size,
            "max_length": self.max_length, "uncertainty_weight": self.uncertainty_weight, **overrides}
        return parse_config(RewardModelConfig, values)


@dataclass
class ReadTexts:
    """Texts as the trunk read them: token ids, hidden states and where each answer starts."""

    ids: list[list[int]]
    states: list[Any]
    starts: list[int]


def _read(trunk: Any, prompts: Sequence[str], responses: Sequence[str]) -> ReadTexts:
    from goodhartlab.text.reward_models import answer_starts

    ids = trunk.token_ids([p + r for p, r in zip(prompts, responses, strict=True)])
    starts = answer_starts(trunk, prompts, ids)
    if any(start >= len(row) for start, row in zip(starts, ids, strict=True)):
        raise ConfigError("max_length", f"is {trunk.max_length} tokens, which a prompt fills, so no answer token is "
                          "left to score; raise max_length")
    return ReadTexts(ids, trunk.states(ids), starts)


_LAST_READ: dict[str, tuple[Any, ReadTexts, ReadTexts]] = {}
"""The trunk and its states of the last pools read, in this process: a worker that runs a study's draws one after
another reads its pools once (the trunk pass is most of a draw's cost), and holds one study's states at most."""


def _read_pools(cfg: MitigationConfig, pool_texts: tuple[list[str], list[str]],
                train_texts: tuple[list[str], list[str]]) -> tuple[Any, ReadTexts, ReadTexts]:
    """(trunk, the evaluated pool as it read it, the training pools as it read them)."""
    from goodhartlab.text.reward_models import load_trunk

    digest = hashlib.sha256(json.dumps([cfg.backbone, cfg.train_layers, cfg.max_length, pool_texts, train_texts])
                            .encode()).hexdigest()
    if digest not in _LAST_READ:
        _LAST_READ.clear()
        trunk = load_trunk(cfg.backbone, cfg.train_layers, max_length=cfg.max_length)
        _say(f"the trunk reads {len(pool_texts[0])} pool answers and {len(train_texts[0])} training answers")
        _LAST_READ[digest] = (trunk, _read(trunk, *pool_texts), _read(trunk, *train_texts))
    return _LAST_READ[digest]


def draw_pairs(prompts: Sequence[str], pools: Sequence[Sequence[str]], gold: np.ndarray, count: int,
               rng: np.random.Generator, *, field: str = "pairs") -> list[tuple[int, int]]:
    """`count` (chosen, rejected) indices into the flattened training pools: two samples of one prompt that gold
    ranks, with different, non-empty texts. Comparisons are drawn in a random order and those that say nothing
    (a tie in gold, the same text twice, an empty answer) are passed over; too few left is an error."""
    pool = len(pools[0])
    candidates = comparison_pairs(len(prompts), pool, available_pairs(len(prompts), pool), rng)
    chosen: list[tuple[int, int]] = []
    for prompt, a, b in candidates:
        first, second = pools[prompt][a], pools[prompt][b]
        if gold[prompt, a] == gold[prompt, b] or first == second or not first.strip() or not second.strip():
            continue
        win, lose = (a, b) if gold[prompt, a] > gold[prompt, b] else (b, a)
        chosen.append((int(prompt * pool + win), int(prompt * pool + lose)))
        if len(chosen) == count:
            return chosen
    raise ConfigError(field, f"is {count}, but the training pools hold only {len(chosen)} comparisons that gold "
                      f"ranks with two different non-empty answers; lower {field} or sample larger training pools")


def labelled_pairs(texts: tuple[list[str], list[str]], gold: np.ndarray, indices: Sequence[tuple[int, int]]
                   ) -> list[Any]:
    """The drawn (chosen, rejected) indices into flattened pools as PreferencePairs, with their gold scores."""
    from goodhartlab.text.preferences import PreferencePair

    prompts, answers = texts
    return [PreferencePair(prompts[c], answers[c], answers[r], float(gold.flat[c]), float(gold.flat[r]))
            for c, r in indices]


def pool_accuracy(scores: np.ndarray, gold: np.ndarray) -> float:
    """The share of same-prompt pairs of the evaluated pool (gold not tied) that `scores` orders as gold does;
    a tie in scores counts one half. scores and gold are (prompts, pool)."""
    agree = total = 0.0
    for s, g in zip(scores, gold, strict=True):
        gold_sign = np.sign(g[:, None] - g[None, :])
        score_sign = np.sign(s[:, None] - s[None, :])
        ranked = np.triu(gold_sign != 0, k=1)
        agree += float(((score_sign == gold_sign) + 0.5 * (score_sign == 0))[ranked].sum())
        total += float(ranked.sum())
    return agree / total if total else float("nan")


def _standardized(values: np.ndarray) -> np.ndarray:
    """Values in standard deviations of the whole pool, so every method's proxy is drawn on one scale."""
    spread = values.std()
    return (values - values.mean()) / (spread if spread > 0 else 1.0)


def _pools(cfg: MitigationConfig) -> tuple[Any, Any, Any, list[str], list[str]]:
    """(best-of-n config, sampler, gold, evaluated prompts, training prompts) of the frontier's pools."""
    from goodhartlab.text.learned_proxy import split_prompts
    from goodhartlab.text.pools import PoolSampler
    from goodhartlab.text.tasks import resolve_task, task_gold

    bon = cfg.bestofn()
    task = resolve_task(bon.task)
    sampler = PoolSampler(bon.sampling())
    return (bon, sampler, task_gold(task, bon.gold), *split_prompts(bon, task, sampler, cfg.pool_seed))


def prepare_pools(runs: Sequence[tuple[MitigationConfig, int]]) -> None:
    """Sample and gold-score the evaluated and training pools once, before the draws run (in parallel or not)."""
    for cfg, _ in runs:
        bon, sampler, gold, prompts, train_prompts = _pools(cfg)
        sampler.scores(gold, prompts, bon.pool, cfg.pool_seed)
        sampler.scores(gold, train_prompts, bon.train_pool, cfg.pool_seed + 1)


def mitigation_study(cfg: MitigationConfig, seed: int) -> RunResult:
    """Every method of the frontier trained on draw `seed` of the pairs, and its best-of-n curve over the pools."""
    import torch

    from goodhartlab.measure.bestofn import bestofn_curve
    from goodhartlab.text.pools import flatten_pools, word_counts
    from goodhartlab.text.reward_models import EncodedPairs, top_scores, train_reward_model

    torch.manual_seed(seed)
    bon, sampler, gold, prompts, train_prompts = _pools(cfg)
    pools = sampler.pools(prompts, bon.pool, cfg.pool_seed)
    gold_scores = sampler.scores(gold, prompts, bon.pool, cfg.pool_seed)
    # the training pools of the best-of-n study's learned proxy (seed + 1: never the evaluated samples)
    train_pools = sampler.pools(train_prompts, bon.train_pool, cfg.pool_seed + 1)
    train_gold = sampler.scores(gold, train_prompts, bon.train_pool, cfg.pool_seed + 1)

    start = time.perf_counter()
    pool_texts, train_texts = flatten_pools(prompts, pools), flatten_pools(train_prompts, train_pools)
    trunk, evaluated, training = _read_pools(cfg, pool_texts, train_texts)
    trunk_seconds = time.perf_counter() - start  # 0 where this process had read these pools for an earlier draw

    indices = draw_pairs(train_prompts, train_pools, train_gold, cfg.pairs, np.random.default_rng(seed))
    pairs = labelled_pairs(train_texts, train_gold, indices)
    encoded = EncodedPairs([training.states[c] for c, _ in indices], [training.states[r] for _, r in indices],
                           [training.ids[c] for c, _ in indices], [training.starts[c] for c, _ in indices])

    ns = bon.ns()
    words = word_counts(pools)
    shape = (len(prompts), bon.pool)
    rows: dict[str, dict[str, Any]] = {}

    def record(method: str, scores: np.ndarray, train_s: float, score_s: float) -> None:
        curve = bestofn_curve(scores.reshape(shape), gold_scores, ns)
        rows[method] = {
            "gold_per_prompt": curve.gold_per_prompt.tolist(),
            "proxy": bestofn_curve(_standardized(scores).reshape(shape), gold_scores, ns).proxy.tolist(),
            "words": bestofn_curve(scores.reshape(shape), words, ns).gold.tolist(),
            "pool_accuracy": pool_accuracy(scores.reshape(shape), gold_scores),
            "train_seconds": round(train_s, 2), "score_seconds": round(score_s, 2)}

    centred = {"center_rewards_coefficient": cfg.center_rewards_coefficient}
    families: tuple[tuple[str, dict[str, Any]], ...] = (
        ("bt", {}), ("bt-centred", centred), ("grm", {}), ("ensemble", {}), ("warm", {}))
    for family, overrides in families:
        began = time.perf_counter()
        model = train_reward_model(cfg.reward_model(family.split("-")[0], **overrides), pairs, seed=seed,
                                   trunk=trunk, encoded=encoded, source=f"draw {seed} of the training pools")
        trained = time.perf_counter() - began
        began = time.perf_counter()
        member = top_scores(model.tops, evaluated.states)
        scored = time.perf_counter() - began
        if family == "ensemble":
            for aggregation in ("mean", "worst", "uncertainty"):
                combined = model.with_aggregation(aggregation).aggregate(member)
                record(f"ensemble-{aggregation}", combined, trained, scored)
        else:
            record(family, model.aggregate(member), trained, scored)
        if family == "bt":  # the cap: a quantile of BT's own rewards on the answers it was trained on
            cap = float(np.quantile(top_scores(model.tops, encoded.chosen + encoded.rejected)[0], cfg.cap_quantile))
            record("bt-capped", np.minimum(member[0], cap), trained, scored)
        _say(f"draw {seed}: {family} trained in {trained:.0f} s, scored the pool in {scored:.0f} s")

    ordered = {name: rows[name] for name in FRONTIER_METHODS}
    kl = kl_bestofn(ns).tolist()
    curves = {name: CurvePoints(kl, row["proxy"], np.asarray(row["gold_per_prompt"]).mean(axis=0).tolist(), "kl")
              for name, row in ordered.items()}
    summary = {"config": config_dict(cfg), "gold_scorer": f"{gold.name} {gold.version}", "ns": ns,
               "trunk_seconds": round(trunk_seconds, 2), "pool_answers": len(pool_texts[0]),
               "pool_gold_sd": float(gold_scores.std()), "methods": ordered}
    return RunResult(curves, summary)


# -- the frontier over draws ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrontierRow:
    """One method over every draw: its mean curve's peak and fall, with 95% intervals that resample draws and
    prompts (the same resamples for every method, so a reduction is paired with the baseline's drop)."""

    method: str
    draws: int
    pool_accuracy: float
    peak_n: int
    peak_kl: float
    gold_at_peak: tuple[float, float, float]
    gold_at_last: tuple[float, float, float]
    drop: tuple[float, float, float]
    reduction: tuple[float, float, float] | None
    """1 − drop / the baseline's drop; None for the baseline, and where the baseline's drop interval reaches 0:
    with no fall to reduce, the ratio is noise over noise."""
    gain: tuple[float, float, float] | None
    """Gold at the largest n minus the baseline's, paired by draw and prompt (None for the baseline)."""
    gap: float
    """Proxy minus gold at the largest n, both as rises from n = 1 in standard deviations of the pool."""
    words_at_last: float
    train_seconds: float
    score_seconds_per_1000: float


def percentile_interval(values: np.ndarray, point: float) -> tuple[float, float, float]:
    """(point, 2.5% and 97.5% quantiles of its resamples)."""
    low, high = np.quantile(values, [0.025, 0.975])
    return (float(point), float(low), float(high))


def frontier_table(summaries: Sequence[Mapping[str, Any]], *, resamples: int = 2000, seed: int = 0
                   ) -> list[FrontierRow]:
    """The frontier over the runs of one study (one summary per draw, all with the same pools)."""
    if not summaries:
        raise ValueError("no runs to summarize: run the study first")
    ns = np.asarray(summaries[0]["ns"])
    methods = list(summaries[0]["methods"])
    gold = {name: np.array([s["methods"][name]["gold_per_prompt"] for s in summaries]) for name in methods}
    draws, prompts = gold[methods[0]].shape[:2]
    rng = np.random.default_rng(seed)
    draw_pick = rng.integers(0, draws, (resamples, draws))
    prompt_pick = rng.integers(0, prompts, (resamples, prompts))
    pool_answers = float(summaries[0]["pool_answers"])
    pool_gold_sd = float(np.mean([s["pool_gold_sd"] for s in summaries])) or 1.0

    def resampled(values: np.ndarray) -> np.ndarray:
        """The mean of (draws, prompts) values under each resample of draws and of prompts."""
        return np.array([values[d][:, p].mean() for d, p in zip(draw_pick, prompt_pick, strict=True)])

    drops: dict[str, tuple[np.ndarray, float]] = {}
    rows = []
    for name in methods:
        curves = gold[name]
        mean = curves.mean(axis=(0, 1))
        peak = int(np.argmax(mean))
        if mean[-1] >= mean[peak] - 1e-9:
            peak = len(ns) - 1
        drop = curves[:, :, peak] - curves[:, :, -1]
        drop_samples = resampled(drop)
        drops[name] = (drop_samples, float(drop.mean()))
        reduction = None
        if name != BASELINE and BASELINE in drops and np.quantile(drops[BASELINE][0], 0.025) > 0:
            base_samples, base_drop = drops[BASELINE]
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = 1 - drop_samples / base_samples
            reduction = percentile_interval(ratio[np.isfinite(ratio)], 1 - float(drop.mean()) / base_drop)
        gain = None
        if name != BASELINE and BASELINE in gold:
            difference = curves[:, :, -1] - gold[BASELINE][:, :, -1]
            gain = percentile_interval(resampled(difference), float(difference.mean()))
        method_rows = [s["methods"][name] for s in summaries]
        proxy_rise = float(np.mean([r["proxy"][-1] - r["proxy"][0] for r in method_rows]))
        gold_rise = float((curves[:, :, -1] - curves[:, :, 0]).mean())
        rows.append(FrontierRow(
            method=name, draws=draws, pool_accuracy=float(np.mean([r["pool_accuracy"] for r in method_rows])),
            peak_n=int(ns[peak]), peak_kl=float(kl_bestofn(ns[peak])),
            gold_at_peak=percentile_interval(resampled(curves[:, :, peak]), float(mean[peak])),
            gold_at_last=percentile_interval(resampled(curves[:, :, -1]), float(mean[-1])),
            drop=percentile_interval(drop_samples, float(drop.mean())), reduction=reduction, gain=gain,
            gap=proxy_rise - gold_rise / pool_gold_sd,
            words_at_last=float(np.mean([r["words"][-1] for r in method_rows])),
            train_seconds=float(np.mean([r["train_seconds"] for r in method_rows])),
            score_seconds_per_1000=float(np.mean([r["score_seconds"] for r in method_rows])) * 1000 / pool_answers))
    return rows


FRONTIER_HEADER = ["method", "draws", "pool accuracy", "peak n", "KL at peak", "gold at peak", "gold at the largest n",
                   "drop", "reduction of BT's drop", "gold at the largest n − BT's", "proxy–gold gap (SD)",
                   "words at the largest n",
                   "training s per draw", "scoring s per 1,000 answers"]


def with_interval(value: tuple[float, float, float] | None, digits: int = 3, percent: bool = False) -> str:
    if value is None:
        return "—"
    scale, unit = (100, "%") if percent else (1, "")
    point, low, high = (scale * v for v in value)
    return f"{point:.{digits}f}{unit} [{low:.{digits}f}, {high:.{digits}f}]"


def frontier_cells(rows: Sequence[FrontierRow]) -> list[list[str]]:
    """The table's cells, as the report and the docs print them (FRONTIER_HEADER's columns)."""
    return [[FRONTIER_METHODS.get(row.method, row.method), str(row.draws), f"{row.pool_accuracy:.3f}", str(row.peak_n),
             f"{row.peak_kl:.2f}", with_interval(row.gold_at_peak), with_interval(row.gold_at_last),
             with_interval(row.drop), with_interval(row.reduction, 0, percent=True), with_interval(row.gain),
             f"{row.gap:.2f}",
             f"{row.words_at_last:.1f}", f"{row.train_seconds:.0f}", f"{row.score_seconds_per_1000:.1f}"]
            for row in rows]


def frontier_tables(summaries: Sequence[Mapping[str, Any]]) -> list[tuple[str, list[str], list[list[str]]]]:
    """The report's tables of a mitigation study: the frontier over its draws."""
    title = (f"The frontier over {len(summaries)} draw(s) of pairs: best-of-n gold with 95% intervals resampling "
             "draws and prompts; the reduction is paired with Bradley–Terry's drop")
    return [(title, FRONTIER_HEADER, frontier_cells(frontier_table(summaries)))]
