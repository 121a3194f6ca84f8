"""The figures and tables of docs/kl-limits.md, from the KL-limits runs.

    python scripts/kl_limits_figures.py [--store goodhartlab-out/kl-limits/results.sqlite]

Reads the runs of the studies `kl-limits` and `kl-limits-budgets` from the store that
`goodhartlab run examples/kl-limits.yaml --out goodhartlab-out/kl-limits` writes, keeps their summaries in
docs/data/kl-limits-runs.json (so the page's numbers have a source in the repository; without a store the figures
are drawn from that file), draws docs/figures/kl-limits-*.png and prints the tables: means over seeds with 95%
t-intervals (over the seeds' means).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from scipy import stats

HERE = Path(__file__).resolve().parents[1]
DATA = HERE / "docs" / "data" / "kl-limits-runs.json"
FIGURES = HERE / "docs" / "figures"
STUDIES = ("kl-limits", "kl-limits-budgets")
MEASURES = ["reward", "gold", "gold_without_repeats", "student_turns", "reward_per_turn", "silent_fraction",
            "teacher_silent_fraction", "repeated_fraction", "kl", "kl_max", "kl_to_base", "deferral_rate", "penalty"]


def export(store_path: Path) -> None:
    from goodhartlab.lab.store import ResultsStore

    rows = []
    with ResultsStore(store_path, mode="read") as store:
        for study in STUDIES:
            for run in store.runs(study):
                rows.append({"study": study, "variant": run.variant, "seed": run.seed, "summary": run.summary})
    DATA.parent.mkdir(parents=True, exist_ok=True)
    DATA.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    print(f"{len(rows)} runs written to {DATA.relative_to(HERE)}")


def interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and 95% t-interval over seeds (the interval is the mean itself with one seed)."""
    data = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(data) == 0:
        return math.nan, math.nan, math.nan
    mean = float(data.mean())
    if len(data) < 2:
        return mean, mean, mean
    half = float(stats.t.ppf(0.975, len(data) - 1) * data.std(ddof=1) / math.sqrt(len(data)))
    return mean, mean - half, mean + half


def shown(values: list[float], digits: int = 2) -> str:
    mean, low, high = interval(values)
    if math.isnan(mean):
        return "–"
    if len(values) < 2:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def by_variant(rows: list[dict[str, Any]], study: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for row in sorted(rows, key=lambda r: (r["variant"], r["seed"])):
        if row["study"] == study:
            out.setdefault(row["variant"], []).append(row["summary"])
    return out


def table(groups: dict[str, list[dict[str, Any]]], which: str, measures: list[str]) -> None:
    print(f"\n| variant ({which}) | seeds | " + " | ".join(measures) + " |")
    print("|---|---|" + "---|" * len(measures))
    for variant, runs in groups.items():
        cells = [shown([run[which][m] for run in runs if run.get(which)]) for m in measures]
        print(f"| {variant} | {len(runs)} | " + " | ".join(cells) + " |")


def rise_by_turns(run: dict[str, Any]) -> tuple[float, float, float]:
    """The reward's rise from the untrained to the trained agent, split exactly into more student turns at the
    untrained reward per turn, and the change of reward per turn over the trained agent's turns."""
    first, final = run["first_batch"], run["final"]
    per_turn_first = first["reward"] / first["student_turns"]
    per_turn_final = final["reward"] / final["student_turns"]
    more_turns = (final["student_turns"] - first["student_turns"]) * per_turn_first
    better_turns = final["student_turns"] * (per_turn_final - per_turn_first)
    return more_turns + better_turns, more_turns, better_turns


def training_figure(groups: dict[str, list[dict[str, Any]]]) -> None:
    panels = [("reward", "reward (summed student sentiment)"), ("gold", "conversation gold"),
              ("student_turns", "student turns per episode"), ("reward_per_turn", "reward per student turn"),
              ("teacher_silent_fraction", "share of teacher turns silent"),
              ("silent_fraction", "share of student turns silent"),
              ("repeated_fraction", "share of student turns restated"), ("kl", "KL charged per episode (nats)")]
    figure, axes = plt.subplots(2, 4, figsize=(16, 6.5))
    for (key, label), axis in zip(panels, axes.flat, strict=True):
        for k, (variant, runs) in enumerate(groups.items()):
            curves = np.array([[row[key] if row[key] is not None else np.nan for row in run["training"]]
                               for run in runs], dtype=float)
            mean = np.nanmean(curves, axis=0)
            steps = np.arange(len(mean))
            axis.plot(steps, mean, label=variant, color=f"C{k}")
            if len(runs) > 1:
                low, high = np.nanmin(curves, axis=0), np.nanmax(curves, axis=0)
                axis.fill_between(steps, low, high, color=f"C{k}", alpha=0.15)
        axis.set_title(label, fontsize=9)
        axis.set_xlabel("PPO update (each a fresh batch of 32 episodes)", fontsize=8)
    axes.flat[0].legend(fontsize=7)
    figure.suptitle("Training batches: mean over seeds, band = range over seeds", fontsize=10)
    figure.tight_layout()
    figure.savefig(FIGURES / "kl-limits-training.png", dpi=110)
    plt.close(figure)


def spend_figure(groups: dict[str, list[dict[str, Any]]]) -> None:
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
    for k, (variant, runs) in enumerate(groups.items()):
        profiles = np.array([run["final_spend"]["kl_by_position"] for run in runs])
        mean = profiles.mean(0)
        positions = np.arange(1, len(mean) + 1)
        left.plot(positions, mean, label=variant, color=f"C{k}")
        total = profiles.sum(1, keepdims=True)
        shares = np.cumsum(profiles, axis=1) / np.where(total > 0, total, 1.0)
        right.plot(positions / len(mean), shares.mean(0), label=variant, color=f"C{k}")
    left.set_xlabel("token of the episode")
    left.set_ylabel("KL charged at that token (nats)")
    left.set_yscale("symlog", linthresh=0.01)
    left.set_title("mean over evaluation episodes and seeds", fontsize=9)
    right.set_xlabel("fraction of the episode")
    right.set_ylabel("share of the episode's KL spent so far")
    right.set_title("each seed's share, averaged over seeds", fontsize=9)
    right.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="spent evenly")
    left.legend(fontsize=7)
    right.legend(fontsize=7)
    figure.suptitle("Where the trained agent spends its KL (evaluation episodes)", fontsize=10)
    figure.tight_layout()
    figure.savefig(FIGURES / "kl-limits-spend.png", dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=str(HERE / "goodhartlab-out" / "kl-limits" / "results.sqlite"))
    args = parser.parse_args()
    if Path(args.store).exists():
        export(Path(args.store))
    rows = json.loads(DATA.read_text(encoding="utf-8"))
    FIGURES.mkdir(exist_ok=True)
    main_runs = by_variant(rows, "kl-limits")
    budget_runs = by_variant(rows, "kl-limits-budgets")
    if main_runs:
        training_figure(main_runs)
        spend_figure(main_runs)
        for which in ("first_batch", "final"):
            table(main_runs, which, MEASURES)
        print("\n| variant | KL share in the first quarter | on the first token |\n|---|---|---|")
        for variant, runs in main_runs.items():
            quarter = [run["final_spend"]["first_quarter_share"] for run in runs]
            first = [run["final_spend"]["first_token_share"] for run in runs]
            print(f"| {variant} | {shown(quarter)} | {shown(first)} |")
        print("\n| variant | reward rise | from more student turns | from better turns | share from more turns |"
              "\n|---|---|---|---|---|")
        for variant, runs in main_runs.items():
            parts = [rise_by_turns(run) for run in runs]
            print(f"| {variant} | {shown([p[0] for p in parts])} | {shown([p[1] for p in parts])} | "
                  f"{shown([p[2] for p in parts])} | {shown([p[1] / p[0] if p[0] > 0 else math.nan for p in parts])} |")
    if budget_runs:
        table(budget_runs, "final", MEASURES)
    for variant, runs in main_runs.items():
        print(f"\n{variant}, seed 0, an evaluation transcript:\n{runs[0]['transcripts'][0]!r}")


if __name__ == "__main__":
    main()
