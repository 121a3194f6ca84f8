"""The figures and tables of docs/detect.md, from a detection benchmark's scores.

    goodhartlab detect bench --tier quick --out goodhartlab-out/detect-quick
    python scripts/detect_figures.py [--scores goodhartlab-out/detect-quick/detection-scores.json]

Copies the scores to docs/data/detection-scores-quick.json (so the page's numbers have a source in the repository;
without --scores the figures are drawn from that file), draws docs/figures/detect-roc.png and detect-lead.png, and
prints the page's tables: pooled held-out rows, held-out AUROC per environment, and alarm rates on healthy twins.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from goodhartlab.detect.scoring import ALL_ENVIRONMENTS, cell, interval_cell
from goodhartlab.lab.detection_report import lead_figure, roc_figure

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "docs" / "data" / "detection-scores-quick.json"
FIGURES = ROOT / "docs" / "figures"


def pooled_table(rows: list[dict[str, Any]]) -> None:
    print("| detector | family | access | held-out AUROC (95% CI) | TPR at the calibrated threshold | FPR on healthy "
          "twins | median lead (evaluations) | false alarms / 1k healthy evaluations | runs (hacked+healthy) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in sorted(rows, key=lambda r: -1.0 if r["auroc"] is None else r["auroc"], reverse=True):
        auroc = "—" if row["auroc"] is None else f"{row['auroc']:.2f} ({interval_cell(row['auroc_interval'])})"
        print(f"| {row['detector']} | {row['family']} | {row['access']} | {auroc} | {cell(row['tpr'])} | "
              f"{cell(row['fpr'])} | {cell(row['median_lead_evaluations'], 1)} | "
              f"{cell(row['false_alarms_per_1k'], 1)} | {row['hacked']}+{row['healthy']} |")


def per_environment_table(rows: list[dict[str, Any]], environments: list[str], measure: str) -> None:
    print("| detector | " + " | ".join(environments) + " |")
    print("|---|" + "---|" * len(environments))
    by_key = {(row["detector"], row["environment"]): row for row in rows}
    for detector in dict.fromkeys(row["detector"] for row in rows):
        cells = [cell(by_key[(detector, env)][measure]) if (detector, env) in by_key else "—" for env in environments]
        print(f"| {detector} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scores", help="a detection-scores.json written by goodhartlab detect bench")
    args = parser.parse_args()
    if args.scores:
        if not Path(args.scores).is_file():
            parser.error(f"--scores {args.scores}: no such file; `goodhartlab detect bench` writes one beside its "
                         "store")
        DATA.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.scores, DATA)
    document = json.loads(DATA.read_text(encoding="utf-8"))
    FIGURES.mkdir(exist_ok=True)
    roc_figure(document).savefig(FIGURES / "detect-roc.png", dpi=110)
    lead = lead_figure(document)
    if lead is not None:
        lead.savefig(FIGURES / "detect-lead.png", dpi=110)
    rows = document["scores"]
    print(f"benchmark {document['benchmark']}; runs by environment: {json.dumps(document['environments'])}\n")
    pooled_table([row for row in rows if row["environment"] == ALL_ENVIRONMENTS])
    held_out = [row for row in rows if row["environment"] != ALL_ENVIRONMENTS]
    scored = [env for env, counts in document["environments"].items() if counts["hacked"] and counts["healthy"]]
    print("\nheld-out AUROC per environment:\n")
    per_environment_table(held_out, scored, "auroc")
    print("\nfalse-positive rate on the healthy twins, per environment (alarms fired on runs that were not hacked):\n")
    per_environment_table(held_out, list(document["environments"]), "fpr")


if __name__ == "__main__":
    main()
