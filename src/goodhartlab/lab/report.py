"""The HTML report, built from the results store alone (opened read-only): one self-contained file.

Runs of a study that differ only in seed form one curve with seeds (a "variant"). Each curve
name of a study gets a figure with a line per variant, peak (▲, with its interval over seeds)
and onset (dotted line) marked; tables give peaks, onsets, transition tests and fitted laws.
Runs stored under one variant name with different configs are never averaged together: each
config is a curve of its own, and the report says so. Non-finite values and failed runs are listed.
"""

from __future__ import annotations

import html
import json
import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np

from goodhartlab import __version__
from goodhartlab.files import write_atomically
from goodhartlab.lab import plots
from goodhartlab.lab.detection_report import detection_section
from goodhartlab.lab.store import ResultsStore, StoredRun, StoreError, StudyInfo
from goodhartlab.measure.analysis import analyze
from goodhartlab.measure.curve import Curve

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


def variant_labels(runs: list[StoredRun]) -> dict[str, str]:
    """The label of each run's curve: its variant, and where one variant name holds runs of different configs
    (an edited spec run into the same store), the config's place among them, so they never share a curve."""
    configs: dict[str, list[str]] = defaultdict(list)
    keys = {}
    for run in runs:
        key = json.dumps(run.config, sort_keys=True, default=str) + run.kind
        keys[run.run_id] = key
        if key not in configs[run.variant]:
            configs[run.variant].append(key)
    return {run.run_id: run.variant if len(configs[run.variant]) == 1 else
            f"{run.variant} [config {configs[run.variant].index(keys[run.run_id]) + 1} of "
            f"{len(configs[run.variant])}]" for run in runs}


def curves_by_name(store: ResultsStore, runs: list[StoredRun],
                   skipped: list[str] | None = None) -> dict[str, dict[str, Curve]]:
    """{curve name: {variant: Curve with one row per seed}} (`Curve.from_seeds` lines the seeds up).
    A variant with gold at fewer than 2 pressures has no curve; `skipped` collects why."""
    gathered: dict[str, dict[str, dict[int, tuple[list[float], list[float], list[float]]]]] = \
        defaultdict(lambda: defaultdict(dict))
    kinds: dict[str, str] = {}
    labels = variant_labels(runs)
    for run in runs:
        for name, points in store.points(run.run_id).items():
            kinds[name] = points.pressure_kind
            x, proxy, gold = gathered[name][labels[run.run_id]].setdefault(run.seed, ([], [], []))
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


def _drawable(fit: Any) -> TypeGuard[dict[str, Any]]:
    """A stored law fit with the coefficients a curve needs (an earlier or damaged run may lack them)."""
    return isinstance(fit, dict) and all(isinstance(fit.get(key), int | float) for key in ("alpha", "beta")) \
        and fit.get("form") in ("bon", "rl")


def _fit_rows(runs: list[StoredRun]) -> list[list[Any]]:
    rows = []
    for run in runs:
        for key, label in (("fit", "all data"), ("early_fit", "early data")):
            fit = run.summary.get(key)
            if not _drawable(fit):
                continue
            extrapolation = fit.get("extrapolation")
            extrapolation = extrapolation if isinstance(extrapolation, dict) else {}
            rows.append([run.variant, run.seed, label, fit["form"], fit["alpha"], fit.get("alpha_ci"),
                         fit["beta"], fit.get("beta_ci"), fit.get("peak_kl"), fit.get("peak_kl_ci"),
                         fit.get("peak_gold"), extrapolation.get("observed_peak_kl"),
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


def _kind_tables(runs: list[StoredRun], labels: dict[str, str]) -> list[str]:
    """The tables a study kind draws across the seeds of each variant (a mitigation study's frontier)."""
    from goodhartlab.lab.registry import KINDS

    by_variant: dict[str, list[StoredRun]] = defaultdict(list)
    for run in runs:
        by_variant[labels[run.run_id]].append(run)
    parts = []
    for variant, variant_runs in by_variant.items():
        kind = KINDS.get(variant_runs[0].kind)
        tables = kind.table_function() if kind is not None else None
        if tables is None:
            continue
        try:
            made = tables([run.summary for run in sorted(variant_runs, key=lambda run: run.seed)])
        except (KeyError, ValueError) as error:
            reason = html.escape(str(error))
            parts.append(f"<p class='note'>{html.escape(variant)}: no table across its seeds ({reason})</p>")
            continue
        for title, header, rows in made:
            parts.append(f"<h3>{html.escape(variant)}: {html.escape(title)}</h3>" + _table(header, rows))
    return parts


def _study_section(store: ResultsStore, info: StudyInfo) -> str:
    study, meta = info.study, info.meta
    runs = store.runs(study)
    failures = store.failures(study)
    if not runs and not failures:
        return ""
    parts = [f"<h2 id='{html.escape(study)}'>{html.escape(info.title)}</h2>",
             f"<p>{html.escape(info.description)}</p>"]
    labels = variant_labels(runs)
    if any(labels[run.run_id] != run.variant for run in runs):
        parts.append("<p class='note'>Some variants hold runs of different configs (a spec edited and run again into "
                     "this store); each config is drawn as a curve of its own, never averaged with the others.</p>")
    fits_by_variant: dict[str, dict[str, Any]] = {}
    for run in runs:
        if isinstance(run.summary.get("fit"), dict) and labels[run.run_id] not in fits_by_variant:
            fits_by_variant[labels[run.run_id]] = run.summary
    skipped: list[str] = []
    for name, variants in curves_by_name(store, runs, skipped).items():
        figure, gold_axis, proxy_axis = plots.new_figure()
        rows = []
        for index, (variant, curve) in enumerate(variants.items()):
            reading = analyze(curve)
            peak, onset, transition = reading.peak, reading.onset, reading.transition
            plots.draw_curve(gold_axis, proxy_axis, curve, variant, plots.colors(index), peak, onset)
            for key, style in (("fit", "law"), ("early_fit", "early-data law")):
                fit = fits_by_variant.get(variant, {}).get(key)
                if _drawable(fit) and meta.get("draw_laws", True):
                    plots.draw_law(gold_axis, fit, float(curve.pressure.max()), plots.colors(index),
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
    nonfinite = [(labels[run.run_id], run.seed, curve, pressure, what) for run in runs
                 for curve, pressure, what in store.nonfinite(run.run_id)]
    if nonfinite:
        parts.append("<h3>Non-finite values</h3><p class='note'>These points returned NaN or infinite proxy or gold; "
                     "they are left out of the curves above, never averaged.</p>")
        parts.append(_table(["variant", "seed", "curve", "pressure", "value"], [list(row) for row in nonfinite]))
    if failures:
        parts.append("<h3>Failed runs</h3><p class='note'>Run the same command again to retry them.</p>")
        parts.append(_table(["variant", "seed", "error"], [[f.variant, f.seed, f.error] for f in failures]))
    fit_rows = _fit_rows(runs)
    if fit_rows:
        parts.append("<h3>Fitted laws (Gao et al. 2022), 95% bootstrap intervals over prompts</h3>")
        parts.append(_table(["variant", "seed", "fitted on", "form", "α", "α interval", "β",
                             "β interval", "peak KL", "peak KL interval", "peak gold",
                             "observed peak KL", "observed peak inside interval",
                             "extrapolation RMSE"], fit_rows))
    parts += _kind_tables(runs, labels)
    header, summary_rows = _summary_rows(runs)
    if summary_rows:
        parts.append("<h3>Run summaries</h3>" + _table(header, summary_rows))
    seconds = sum(run.duration_s for run in runs)
    parts.append(f"<p class='note'>{len(runs)} runs, {seconds:.1f} s of compute. Configs and "
                 "environments are stored with each run.</p>")
    return "\n".join(parts)


def check_report_path(out_path: str | Path) -> Path:
    """The report's file, or a StoreError when writing it would destroy something: a results store, a
    folder, or a file that is not an HTML report of ours."""
    out = Path(out_path)
    if out.is_dir():
        raise StoreError(f"--out {out} is a folder; give the report's file name, e.g. {out / 'report.html'}")
    if out.exists():
        try:
            with out.open("rb") as handle:
                head = handle.read(200)
        except OSError as error:
            raise StoreError(f"cannot write the report to {out}: {error.strerror}") from None
        if not head.startswith(b"<!doctype html><html><head><meta charset='utf-8'><title>goodhartlab report"):
            what = "a results store" if head.startswith(b"SQLite format 3") else "not a goodhartlab report"
            raise StoreError(f"--out {out} exists and is {what}; the report would replace it. Give another file name")
    return out


def _order(study: StudyInfo) -> tuple[float, float]:
    """Studies in the order their command listed them (stored in meta), earlier commands first."""
    order = study.meta.get("order")
    if isinstance(order, list) and len(order) == 2 and all(isinstance(x, int | float) for x in order):
        return float(order[0]), float(order[1])
    return math.inf, 0.0


def build_report(store_path: str | Path, out_path: str | Path) -> Path:
    """Write the report for every study in the store; returns the file's path."""
    source = Path(store_path)
    out = check_report_path(out_path)
    with ResultsStore(source, mode="read") as store:
        studies = sorted(store.studies(), key=_order)
        sections = [_study_section(store, study) for study in studies]
    toc = "".join(f"<li><a href='#{html.escape(study.study)}'>{html.escape(study.title)}</a></li>"
                  for study in studies)
    detection = detection_section(source)
    if detection:
        sections.append(detection)
        toc += "<li><a href='#detection'>Detection benchmark</a></li>"
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>goodhartlab report</title>"
            f"<style>{STYLE}</style></head><body><h1>goodhartlab report</h1>"
            f"<p class='note'>goodhartlab {__version__}, built {time.strftime('%Y-%m-%d %H:%M')} "
            f"from {html.escape(str(source))}.</p><ul>{toc}</ul>{''.join(sections)}</body></html>")
    write_atomically(out, lambda partial: partial.write_text(page, encoding="utf-8"))
    return out
