"""The figure and table of docs/mitigate.md, from the mitigation frontier's runs.

    python scripts/mitigation_figures.py [--store goodhartlab-out/mitigation/results.sqlite]

Reads the runs of the study `mitigation-bestofn` from the store that
`goodhartlab run examples/mitigation-bestofn.yaml --out goodhartlab-out/mitigation` writes, keeps their summaries in
docs/data/mitigation-runs.json (so the page's numbers have a source in the repository; without a store the figure
is drawn from that file), draws docs/figures/mitigation-bestofn.png and prints the frontier table.
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

from goodhartlab.text.mitigation import FRONTIER_HEADER, FRONTIER_METHODS, frontier_cells, frontier_table

HERE = Path(__file__).resolve().parents[1]
DATA = HERE / "docs" / "data" / "mitigation-runs.json"
FIGURE = HERE / "docs" / "figures" / "mitigation-bestofn.png"
STUDY = "mitigation-bestofn"


def export(store_path: Path) -> None:
    from goodhartlab.lab.store import ResultsStore

    with ResultsStore(store_path, mode="read") as store:
        rows = [{"seed": run.seed, "summary": run.summary} for run in sorted(store.runs(STUDY), key=lambda r: r.seed)]
    if not rows:
        raise SystemExit(f"{store_path}: no runs of study {STUDY}; run examples/mitigation-bestofn.yaml first")
    DATA.parent.mkdir(parents=True, exist_ok=True)
    DATA.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    print(f"{len(rows)} runs written to {DATA.relative_to(HERE)}")


def draw(summaries: list[dict[str, Any]]) -> None:
    ns = np.asarray(summaries[0]["ns"])
    kl = np.log(ns) - (ns - 1) / ns
    figure, axis = plt.subplots(figsize=(8, 5))
    colors = plt.get_cmap("tab10")
    for index, method in enumerate(FRONTIER_METHODS):
        per_draw = np.array([np.asarray(s["methods"][method]["gold_per_prompt"]).mean(axis=0) for s in summaries])
        mean = per_draw.mean(axis=0)
        style = "-" if method in ("bt", "ensemble-worst", "ensemble-uncertainty") else "--"
        axis.plot(kl, mean, style, marker="o", markersize=3, color=colors(index), label=FRONTIER_METHODS[method])
        if len(per_draw) > 1:
            axis.fill_between(kl, per_draw.min(axis=0), per_draw.max(axis=0), color=colors(index), alpha=0.08)
    for n, x in zip(ns, kl, strict=True):
        axis.annotate(f"n={n}", (x, 0), xycoords=("data", "axes fraction"), xytext=(0, 3), textcoords="offset points",
                      fontsize=7, ha="center", color="grey")
    axis.set_xlabel("KL of best-of-n (nats), log n − (n − 1)/n")
    axis.set_ylabel("gold of the pick (mean over prompts and draws)")
    axis.set_title(f"Best-of-n on the short-review task: one frontier, {len(summaries)} draws of 256 pairs "
                   "(band: range over draws)", fontsize=9)
    axis.legend(fontsize=7)
    figure.tight_layout()
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(FIGURE, dpi=120)
    print(f"figure written to {FIGURE.relative_to(HERE)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=None, help="the study's results.sqlite (default: the kept data)")
    args = parser.parse_args()
    if args.store is not None:
        export(args.store)
    summaries = [row["summary"] for row in json.loads(DATA.read_text(encoding="utf-8"))]
    draw(summaries)
    print("| " + " | ".join(FRONTIER_HEADER) + " |")
    print("|" + "---|" * len(FRONTIER_HEADER))
    for cells in frontier_cells(frontier_table(summaries)):
        print("| " + " | ".join(cells) + " |")
    words = {m: np.mean([s["methods"][m]["words"] for s in summaries], axis=0) for m in FRONTIER_METHODS}
    print("\nwords of the pick by n:", summaries[0]["ns"])
    for method, curve in words.items():
        print(f"  {method}: " + ", ".join(f"{w:.1f}" for w in curve))


if __name__ == "__main__":
    main()
