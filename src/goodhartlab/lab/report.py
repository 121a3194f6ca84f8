"""The HTML report, built from the results store alone: one self-contained file.

Runs of a study that differ only in seed form one curve with seeds (a "variant"). Each curve
name of a study gets a figure with a line per variant, peak (▲, with its interval over seeds)
and onset (dotted line) marked; tables give peaks, onsets, transition tests and fitted laws.
"""

from __future__ import annotations

import html
import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from goodhartlab import __version__
from goodhartlab.lab import plots
from goodhartlab.lab.store import ResultsStore, StoredRun, replace_atomically
from goodhartlab.measure.curve import Curve
from goodhartlab.measure.transitions import detect_transition, find_onset, find_peak

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
h1 { border-bottom: 2px solid #444; } h2 { margin-top: 2em; border-bottom: 1px solid #bbb; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th { background: #f0f0f0; } td:first-child, th:first-child { text-align: left; }
figure { margin: 1em 0; } figcaption { font-size: 0.85em; color: #555; }
.note { color: #555; font-size: 0.9em; }
"""


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "—"
        return f"{value:.{digits}g}"
    if isinstance(value, list | tuple) and len(value) == 2:
        return f"[{_fmt(value[0], digits)}, {_fmt(value[1], digits)}]"
    return html.escape(str(value))


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(cell)}</td>" for cell in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def curves_by_name(store: ResultsStore, runs: list[StoredRun],
                   skipped: list[str] | None = None) -> dict[str, dict[str, Curve]]:
    """{curve name: {variant: Curve with one row per seed}} (`Curve.from_seeds` lines the seeds up).
    A variant with gold at fewer than 2 pressures has no curve; `skipped` collects why."""
    gathered: dict[str, dict[str, dict[int, tuple[list[float], list[float], list[float]]]]] = \
        defaultdict(lambda: defaultdict(dict))
    kinds: dict[str, str] = {}
    for run in runs:
        for name, points in store.points(run.run_id).items():
            kinds[name] = points.pressure_kind
            x, proxy, gold = gathered[name][run.variant].setdefault(run.seed, ([], [], []))
            x.extend(points.pressure)
            proxy.extend(np.nan if v is None else v for v in points.proxy)
            gold.extend(np.nan if v is None else v for v in points.gold)
    curves: dict[str, dict[str, Curve]] = {}
    for name, variants in gathered.items():
        for variant, seeds in variants.items():
            try:
                curves.setdefault(name, {})[variant] = Curve.from_seeds(seeds, kinds[name])
            except ValueError as error:
                if skipped is not None:
                    skipped.append(f"{name}, {variant}: no curve ({error}; gold is needed at 2 pressures or more)")
        if not curves.get(name):
            curves.pop(name, None)
    return curves


def _fit_rows(runs: list[StoredRun]) -> list[list[Any]]:
    rows = []
    for run in runs:
        for key, label in (("fit", "all data"), ("early_fit", "early data")):
            fit = run.summary.get(key)
            if not fit:
                continue
            extrapolation = fit.get("extrapolation") or {}
            rows.append([run.variant, run.seed, label, fit["form"], fit["alpha"], fit["alpha_ci"],
                         fit["beta"], fit["beta_ci"], fit["peak_kl"], fit["peak_kl_ci"],
                         fit["peak_gold"], extrapolation.get("observed_peak_kl"),
                         extrapolation.get("peak_in_interval"), extrapolation.get("rmse")])
    return rows


def _summary_rows(runs: list[StoredRun]) -> tuple[list[str], list[list[Any]]]:
    keys: list[str] = []
    for run in runs:
        for key, value in run.summary.items():
            if isinstance(value, int | float | str | bool) and key not in keys:
                keys.append(key)
    rows = [[run.variant, run.seed, *[run.summary.get(k) for k in keys]] for run in runs
            if any(k in run.summary for k in keys)]
    return ["variant", "seed", *keys], rows


def _study_section(store: ResultsStore, study: str, title: str, description: str,
                   meta: dict[str, Any]) -> str:
    runs = store.runs(study)
    if not runs:
        return ""
    parts = [f"<h2 id='{html.escape(study)}'>{html.escape(title)}</h2>",
             f"<p>{html.escape(description)}</p>"]
    fits_by_variant: dict[str, dict[str, Any]] = {}
    for run in runs:
        if "fit" in run.summary and run.variant not in fits_by_variant:
            fits_by_variant[run.variant] = run.summary
    skipped: list[str] = []
    for name, variants in curves_by_name(store, runs, skipped).items():
        figure, gold_axis, proxy_axis = plots.new_figure()
        colors = plt.get_cmap("tab10")
        rows = []
        for index, (variant, curve) in enumerate(variants.items()):
            peak, onset = find_peak(curve), find_onset(curve)
            transition = detect_transition(curve)
            plots.draw_curve(gold_axis, proxy_axis, curve, variant, colors(index), peak, onset)
            for key, style in (("fit", "law"), ("early_fit", "early-data law")):
                fit = fits_by_variant.get(variant, {}).get(key)
                if fit and meta.get("draw_laws", True):
                    plots.draw_law(gold_axis, fit, float(curve.pressure.max()), colors(index),
                                   f"{variant}: {style}")
            rows.append([variant, curve.seeds, peak.pressure, peak.interval, peak.gold,
                         onset.pressure, onset.interval, onset.frequency, transition.detected,
                         str(transition)])
        plots.finish(figure, gold_axis, proxy_axis, next(iter(variants.values())).pressure_kind,
                     log_x=meta.get("log_x", False))
        parts.append(f"<figure>{plots.to_svg(figure)}<figcaption>{html.escape(name)}: gold "
                     "(solid, 95% band over seeds) and proxy (dashed, right axis); ▲ peak with its "
                     "interval over seeds, dotted line onset. Seeds measured at pressures of their own "
                     "(the KL of RL or DPO checkpoints) are interpolated onto the pressures every seed "
                     "reaches.</figcaption></figure>")
        parts.append(_table(["variant", "seeds", "peak", "peak interval", "gold at peak", "onset",
                             "onset interval", "onset frequency", "transition", "transition test"],
                            rows))
    parts += [f"<p class='note'>{html.escape(reason)}</p>" for reason in skipped]
    fit_rows = _fit_rows(runs)
    if fit_rows:
        parts.append("<h3>Fitted laws (Gao et al. 2022), 95% bootstrap intervals over prompts</h3>")
        parts.append(_table(["variant", "seed", "fitted on", "form", "α", "α interval", "β",
                             "β interval", "peak KL", "peak KL interval", "peak gold",
                             "observed peak KL", "observed peak inside interval",
                             "extrapolation RMSE"], fit_rows))
    header, summary_rows = _summary_rows(runs)
    if summary_rows:
        parts.append("<h3>Run summaries</h3>" + _table(header, summary_rows))
    seconds = sum(run.duration_s for run in runs)
    parts.append(f"<p class='note'>{len(runs)} runs, {seconds:.1f} s of compute. Configs and "
                 "environments are stored with each run.</p>")
    return "\n".join(parts)


def build_report(store_path: str | Path, out_path: str | Path) -> Path:
    """Write the report for every study in the store; returns the file's path."""
    source = Path(store_path)
    if not source.exists():
        raise FileNotFoundError(f"no results store at {source}; run `goodhartlab demo` or a sweep "
                                "first, or pass --store")
    with ResultsStore(source) as store:
        studies = store.studies()
        sections = [_study_section(store, *study) for study in studies]
    toc = "".join(f"<li><a href='#{html.escape(s)}'>{html.escape(t)}</a></li>"
                  for s, t, _, _ in studies)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>goodhartlab report</title>"
            f"<style>{STYLE}</style></head><body><h1>goodhartlab report</h1>"
            f"<p class='note'>goodhartlab {__version__}, built {time.strftime('%Y-%m-%d %H:%M')} "
            f"from {html.escape(str(source))}.</p><ul>{toc}</ul>{''.join(sections)}</body></html>")
    out = Path(out_path)
    replace_atomically(out, lambda partial: partial.write_text(page, encoding="utf-8"))
    return out
