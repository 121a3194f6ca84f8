"""The GRPO figure and table of docs/mitigate.md, from the runs of examples/mitigation-rl.yaml.

    python scripts/mitigation_rl_figures.py [--store goodhartlab-out/mitigation/results.sqlite]

Reads the runs of the study `mitigation-rl` from the store that `goodhartlab run examples/mitigation-rl.yaml --out
goodhartlab-out/mitigation` writes, keeps their summaries in docs/data/mitigation-rl-runs.json (without a store the
figure is drawn from that file), draws docs/figures/mitigation-rl.png (gold and KL per block of steps, a line per
method) and prints the table: each method's peak and drop over its seeds, and its last block's gold against
Bradley–Terry's, paired by seed. With --hardened it also scores the completions the runs kept (two a step) of the
first and the last block with the hardened gold, `multiemo-coherent`, beside the gold the runs were scored by.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from goodhartlab.text.mitigation_rl import (
    BLOCKS,
    RL_FRONTIER_HEADER,
    block_steps,
    rl_frontier_cells,
    rl_frontier_table,
    step_blocks,
)

HERE = Path(__file__).resolve().parents[1]
DATA = HERE / "docs" / "data" / "mitigation-rl-runs.json"
FIGURE = HERE / "docs" / "figures" / "mitigation-rl.png"
STUDY = "mitigation-rl"
KEPT = ("method", "pairs", "reward_model_train_seconds", "reward_model_train_accuracy", "train_seconds", "log",
        "proxy_scorer", "gold_scorer", "samples")


def export(store_path: Path) -> None:
    from goodhartlab.lab.store import ResultsStore

    with ResultsStore(store_path, mode="read") as store:
        rows = [{"variant": run.variant, "seed": run.seed, "summary": {k: run.summary[k] for k in KEPT if k in
                                                                       run.summary}}
                for run in sorted(store.runs(STUDY), key=lambda r: (r.variant, r.seed))]
    if not rows:
        raise SystemExit(f"{store_path}: no runs of {STUDY}; run examples/mitigation-rl.yaml first")
    DATA.parent.mkdir(parents=True, exist_ok=True)
    DATA.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    print(f"{len(rows)} runs written to {DATA.relative_to(HERE)}")


def block_means(summary: dict[str, Any], key: str, average: Any = np.mean) -> np.ndarray:
    return np.array([average(block) for block in step_blocks(summary, key)])


def draw(methods: dict[str, list[dict[str, Any]]]) -> None:
    figure, (gold_axis, kl_axis) = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = plt.get_cmap("tab10")
    for index, (method, summaries) in enumerate(methods.items()):
        size = block_steps(summaries[0])
        x = size * np.arange(BLOCKS) + (size + 1) / 2
        gold = np.array([block_means(s, "gold") for s in summaries])
        kl = np.array([block_means(s, "kl", np.median) for s in summaries])  # a step's KL estimate can spike
        gold_axis.plot(x, gold.mean(axis=0), "-o", markersize=3, color=colors(index), label=method)
        gold_axis.fill_between(x, gold.min(axis=0), gold.max(axis=0), color=colors(index), alpha=0.12)
        kl_axis.plot(x, kl.mean(axis=0), "-o", markersize=3, color=colors(index), label=method)
    gold_axis.set(xlabel="GRPO step (block centre)", ylabel="gold (MultiEmo head × distinct bigrams)",
                  title=f"gold per block of {size} steps: mean over seeds (band: range)")
    kl_axis.set(xlabel="GRPO step (block centre)", ylabel="nats per sequence",
                title="KL to the initial policy (median per block)")
    gold_axis.legend(fontsize=8)
    figure.tight_layout()
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(FIGURE, dpi=110)
    print(f"figure written to {FIGURE.relative_to(HERE)}")


def against_baseline(methods: dict[str, list[dict[str, Any]]], baseline: str = "bt", resamples: int = 2000) -> None:
    """Each method's last-block gold minus BT's, paired by seed; the interval resamples seeds and steps."""
    if baseline not in methods:
        return
    rng = np.random.default_rng(0)
    base = {s["seed"]: s for s in methods[baseline]}
    for method, summaries in methods.items():
        if method == baseline:
            continue
        paired = [(s, base[s["seed"]]) for s in summaries if s["seed"] in base]
        if not paired:
            continue
        last = [(step_blocks(a, "gold")[-1], step_blocks(b, "gold")[-1]) for a, b in paired]
        point = float(np.mean([a.mean() - b.mean() for a, b in last]))
        draws = []
        for _ in range(resamples):
            picked = rng.integers(0, len(last), len(last))
            draws.append(np.mean([rng.choice(last[i][0], len(last[i][0])).mean()
                                  - rng.choice(last[i][1], len(last[i][1])).mean() for i in picked]))
        low, high = np.quantile(draws, [0.025, 0.975])
        print(f"  {method} − {baseline}, last block: {point:+.3f} [{low:+.3f}, {high:+.3f}] ({len(paired)} seeds)")


def hardened(methods: dict[str, list[dict[str, Any]]]) -> None:
    """The kept completions of the first and last block under the run's gold and under `multiemo-coherent`."""
    from goodhartlab.text.gold import GOLD_COHERENT
    from goodhartlab.text.tasks import resolve_task, task_gold

    gold = task_gold(resolve_task("sentiment"), GOLD_COHERENT)
    for method, summaries in methods.items():
        size = block_steps(summaries[0])
        for name, (first, last) in (("first", (1, size)), ("last", ((BLOCKS - 1) * size + 1, BLOCKS * size))):
            kept = [k for s in summaries for k in s["samples"] if first <= k["step"] <= last]
            scores = gold.score([k["prompt"] for k in kept], [k["completion"] for k in kept])
            print(f"  {method}, {name} block: {len(kept)} kept completions, run's gold "
                  f"{np.mean([k['score'] for k in kept]):.3f}, {GOLD_COHERENT} {np.mean(scores):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=None, help="the study's results.sqlite (default: the kept data)")
    parser.add_argument("--hardened", action="store_true", help="also score the kept completions with the hardened "
                        "gold (about 2 s a completion on one core)")
    args = parser.parse_args()
    if args.store is not None:
        export(args.store)
    rows = json.loads(DATA.read_text(encoding="utf-8"))
    # one entry per variant of the spec (two variants may share a method's short name), keyed by that name
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_variant.setdefault(row["variant"], []).append({**row["summary"], "seed": row["seed"]})
    order = ["bt", "grm", "ensemble-uncertainty", "par(bt)"]
    names = {variant: summaries[0]["method"] for variant, summaries in by_variant.items()}
    if len(set(names.values())) < len(names):
        names = {variant: f"{method} ({variant})" for variant, method in names.items()}
    methods = {names[v]: by_variant[v] for v in sorted(by_variant, key=lambda v: order.index(names[v])
                                                       if names[v] in order else len(order))}
    draw(methods)
    print("| " + " | ".join(RL_FRONTIER_HEADER) + " |")
    print("|" + "---|" * len(RL_FRONTIER_HEADER))
    for summaries in methods.values():
        for cells in rl_frontier_cells([rl_frontier_table(summaries)]):
            print("| " + " | ".join(cells) + " |")
    against_baseline(methods)
    for method, summaries in methods.items():
        for s in summaries:
            print(f"  {method} seed {s['seed']}: reward model trained in {s['reward_model_train_seconds']:.0f} s "
                  f"(training accuracy {s['reward_model_train_accuracy']:.3f}), GRPO {s['train_seconds']:.0f} s; "
                  f"gold per block " + ", ".join(f"{g:.3f}" for g in block_means(s, "gold")))
    if args.hardened:
        hardened(methods)


if __name__ == "__main__":
    main()
