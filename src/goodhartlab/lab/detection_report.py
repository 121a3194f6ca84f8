"""The report's detection section: what `detect bench` scored, read from the scores file beside the store.

The benchmark writes `detection-scores.json` next to its results store: every detector's rows (per held-out
environment and pooled) and each held-out run's outcome. The section draws the pooled ROC curves and the
lead-time distributions from those outcomes, and tables the rows.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from goodhartlab.detect.scoring import ALL_ENVIRONMENTS, access_label, cell, interval_cell
from goodhartlab.lab import plots

SCORES = "detection-scores.json"


def roc_points(records: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray] | None:
    """False- and true-positive rates at every threshold over the held-out outcomes that were scored (a run that
    never had a statistic ranks below all others); None without both classes."""
    scored = [r for r in records if not r["skipped"] and (r["score"] is not None or r["never_scored"])]
    if not any(r["label"] == "hacked" for r in scored) or not any(r["label"] == "healthy" for r in scored):
        return None
    finite = [r["score"] for r in scored if r["score"] is not None]
    floor = (min(finite) - 1.0) if finite else 0.0
    values = np.array([floor if r["score"] is None else r["score"] for r in scored])
    hacked = np.array([r["label"] == "hacked" for r in scored])
    thresholds = np.unique(values)[::-1]
    tpr = np.array([0.0] + [float(np.mean(values[hacked] >= t)) for t in thresholds])
    fpr = np.array([0.0] + [float(np.mean(values[~hacked] >= t)) for t in thresholds])
    return fpr, tpr


def _rows_table(rows: list[dict[str, Any]]) -> str:
    header = ["detector", "family", "access", "environment", "AUROC", "95% CI", "TPR", "FPR", "median lead (evals)",
              "FA / 1k healthy evals", "hacked + healthy", "skipped"]
    body = []
    for row in rows:
        body.append([row["detector"], row["family"], access_label(row["access"], row["gold_every"]),
                     row["environment"], cell(row["auroc"]), interval_cell(row["auroc_interval"]), cell(row["tpr"]),
                     cell(row["fpr"]), cell(row["median_lead_evaluations"], 1),
                     cell(row["false_alarms_per_1k"], 1), f"{row['hacked']}+{row['healthy']}", row["skipped"]])
    cells = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in line) + "</tr>" for line in body)
    return "<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + f"</tr>{cells}</table>"


def roc_figure(document: dict[str, Any]) -> Figure:
    """The pooled held-out ROC curve of every detector scored (dashed: baselines)."""
    pooled = {row["detector"]: row for row in document["scores"] if row["environment"] == ALL_ENVIRONMENTS}
    figure = Figure(figsize=(6.4, 5.6), dpi=100)
    axis = figure.add_subplot()
    axis.plot([0, 1], [0, 1], color="#999", linewidth=0.8, linestyle=":")
    drawn = 0
    for name, records in document["outcomes"].items():
        points = roc_points(records)
        if points is None or name not in pooled:
            continue
        row = pooled[name]
        style = "--" if row["baseline"] else "-"
        axis.plot(points[0], points[1], style, color=plots.colors(drawn), linewidth=1.2,
                  label=f"{name} ({row['access']}), AUROC {cell(row['auroc'])}")
        drawn += 1
    axis.set_xlabel("false-positive rate (healthy twins)")
    axis.set_ylabel("true-positive rate (hacked runs)")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.01)
    axis.legend(fontsize=6.5, loc="lower right")
    figure.tight_layout()
    return figure


def lead_figure(document: dict[str, Any]) -> Figure | None:
    """Each detector's lead times on hacked runs it alarmed on (None when it alarmed on none)."""
    leads = {name: [r["lead_evaluations"] for r in records
                    if r["label"] == "hacked" and r["lead_evaluations"] is not None]
             for name, records in document["outcomes"].items()}
    leads = {name: values for name, values in leads.items() if values}
    if not leads:
        return None
    figure = Figure(figsize=(7.2, 0.45 * len(leads) + 1.2), dpi=100)
    axis = figure.add_subplot()
    rng = np.random.default_rng(0)  # jitter only, so the figure is the same every build
    for index, (_, values) in enumerate(sorted(leads.items())):
        axis.scatter(values, index + rng.uniform(-0.18, 0.18, len(values)), s=9, color=plots.colors(index),
                     alpha=0.7)
        axis.plot([np.median(values)] * 2, [index - 0.3, index + 0.3], color="black", linewidth=1.5)
    axis.axvline(0, color="#999", linewidth=0.8, linestyle=":")
    axis.set_yticks(range(len(leads)), sorted(leads), fontsize=8)
    axis.set_xlabel("lead time (evaluations before the ground-truth onset; negative: late)")
    figure.tight_layout()
    return figure


def detection_section(store_path: Path) -> str:
    """The section, or '' when no detection benchmark was scored into this store's folder."""
    path = store_path.parent / SCORES
    if not path.is_file():
        return ""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        rows = document["scores"]
        pooled = {row["detector"]: row for row in rows if row["environment"] == ALL_ENVIRONMENTS}
        environments = document["environments"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        return (f"<h2 id='detection'>Detection benchmark</h2><p class='note'>{html.escape(str(path))} could not be "
                f"read ({html.escape(str(error))}); run <code>goodhartlab detect bench</code> again.</p>")
    parts = [f"<h2 id='detection'>Detection benchmark ({html.escape(str(document.get('benchmark', '')))})</h2>",
             "<p>Every detector scored leave-one-environment-out: its threshold calibrated on the other "
             f"environments' healthy runs at a {document.get('false_alarm_rate', 0.05):.0%} false-alarm rate, then "
             "run online over the held-out environment's hacked runs and healthy twins. Dashed lines and the "
             "families marked baseline are the heuristic signals and Pan et al.'s trusted-policy detectors.</p>",
             "<table><tr><th>environment</th><th>hacked (with an onset)</th><th>healthy</th>"
             "<th>left out (loophole, gold never fell)</th></tr>"
             + "".join(f"<tr><td>{html.escape(env)}</td><td>{counts['hacked']}</td><td>{counts['healthy']}</td>"
                       f"<td>{counts['left_out']}</td></tr>" for env, counts in environments.items())
             + "</table>",
             f"<figure>{plots.to_svg(roc_figure(document))}<figcaption>ROC curves of the held-out outcomes pooled "
             "over environments (each under its own fold's threshold).</figcaption></figure>"]
    lead = lead_figure(document)
    if lead is not None:
        parts.append(f"<figure>{plots.to_svg(lead)}<figcaption>Lead times of the first alarm on hacked runs, per "
                     "detector (black: median). Runs never alarmed are not drawn.</figcaption></figure>")
    parts.append("<h3>Pooled over held-out environments</h3>" + _rows_table(list(pooled.values())))
    parts.append("<h3>Per held-out environment</h3>"
                 + _rows_table([row for row in rows if row["environment"] != ALL_ENVIRONMENTS]))
    return "\n".join(parts)
