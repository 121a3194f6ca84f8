"""The figure and table of docs/mitigate.md, from the mitigation frontier's runs.

    python scripts/mitigation_figures.py [--store goodhartlab-out/mitigation/results.sqlite]

Reads the runs of the studies `mitigation-bestofn` (256 pairs) and `mitigation-bestofn-64` (64 pairs) from the store
that `goodhartlab run examples/mitigation-bestofn.yaml --out goodhartlab-out/mitigation` (and the same for
`mitigation-bestofn-64.yaml`) writes, keeps their summaries in docs/data/mitigation-runs.json (so the page's numbers
have a source in the repository; without a store the figure is drawn from that file), draws
docs/figures/mitigation-bestofn.png (a panel per study) and prints each study's frontier table.
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

from goodhartlab.measure.kl import kl_bestofn
from goodhartlab.text.mitigation import FRONTIER_HEADER, FRONTIER_METHODS, frontier_cells, frontier_table

HERE = Path(__file__).resolve().parents[1]
DATA = HERE / "docs" / "data" / "mitigation-runs.json"
FIGURE = HERE / "docs" / "figures" / "mitigation-bestofn.png"
STUDIES = {"mitigation-bestofn": "256 pairs", "mitigation-bestofn-64": "64 pairs"}


def export(store_path: Path) -> None:
    from goodhartlab.lab.store import ResultsStore

    with ResultsStore(store_path, mode="read") as store:
        rows = [{"study": study, "seed": run.seed, "summary": run.summary} for study in STUDIES
                for run in sorted(store.runs(study), key=lambda r: r.seed)]
    if not rows:
        raise SystemExit(f"{store_path}: no runs of {' or '.join(STUDIES)}; run examples/mitigation-bestofn.yaml first")
    DATA.parent.mkdir(parents=True, exist_ok=True)
    DATA.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    print(f"{len(rows)} runs written to {DATA.relative_to(HERE)}")


def draw(studies: dict[str, list[dict[str, Any]]]) -> None:
    figure, axes = plt.subplots(1, len(studies), figsize=(7 * len(studies), 5), sharey=True, squeeze=False)
    for axis, (study, summaries) in zip(axes[0], studies.items(), strict=True):
        panel(axis, summaries, STUDIES[study])
    axes[0][0].set_ylabel("gold of the pick (mean over prompts and draws)")
    axes[0][0].legend(fontsize=7)
    figure.tight_layout()
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(FIGURE, dpi=120)
    print(f"figure written to {FIGURE.relative_to(HERE)}")


def panel(axis: Any, summaries: list[dict[str, Any]], pairs: str) -> None:
    ns = np.asarray(summaries[0]["ns"])
    kl = kl_bestofn(ns)
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
    axis.set_title(f"Best-of-n, short-review task: {len(summaries)} draws of {pairs} (band: range over draws)",
                   fontsize=9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=None, help="the study's results.sqlite (default: the kept data)")
    args = parser.parse_args()
    if args.store is not None:
        export(args.store)
    rows = json.loads(DATA.read_text(encoding="utf-8"))
    studies = {study: [row["summary"] for row in rows if row["study"] == study] for study in STUDIES}
    studies = {study: summaries for study, summaries in studies.items() if summaries}
    draw(studies)
    for study, summaries in studies.items():
        print(f"\n{study} ({STUDIES[study]}, {len(summaries)} draws; trunk pass "
              f"{max(s['trunk_seconds'] for s in summaries):.0f} s for {summaries[0]['pool_answers']} pool answers and "
              "the training answers)")
        print("| " + " | ".join(FRONTIER_HEADER) + " |")
        print("|" + "---|" * len(FRONTIER_HEADER))
        for cells in frontier_cells(frontier_table(summaries)):
            print("| " + " | ".join(cells) + " |")
        print("gold (mean over draws) and words of the pick by n:", summaries[0]["ns"])
        for method in FRONTIER_METHODS:
            gold = np.mean([np.asarray(s["methods"][method]["gold_per_prompt"]).mean(axis=0) for s in summaries], 0)
            words = np.mean([s["methods"][method]["words"] for s in summaries], axis=0)
            print(f"  {method}: gold " + ", ".join(f"{g:.3f}" for g in gold) + "; words "
                  + ", ".join(f"{w:.1f}" for w in words))


if __name__ == "__main__":
    main()
