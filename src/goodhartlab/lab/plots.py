"""Figures shared by the report and the CLI: curves with peak and onset marked, fitted laws.

Figures are built with matplotlib's object interface, never pyplot, so importing goodhartlab leaves a
user's plotting backend (a notebook's inline one) as it was.
"""

from __future__ import annotations

import io
from typing import Any

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from goodhartlab.measure.curve import Curve
from goodhartlab.measure.scaling import law_value
from goodhartlab.measure.transitions import Onset, Peak

PRESSURE_LABELS = {"kl": "KL to the reference policy (nats per sequence)",
                   "sqrt_kl": "√KL to the reference policy (√nats per sequence)",
                   "capability": "capability level", "steps": "training steps", "n": "n",
                   "episodes": "training episodes", "training_steps": "training steps (environment steps)",
                   "width": "network width (units per layer)", "depth": "network depth (hidden layers)",
                   "action_resolution": "action resolution", "observation_noise": "observation noise"}


def colors(index: int) -> Any:
    """The index-th colour of matplotlib's tab10 cycle."""
    return matplotlib.colormaps["tab10"](index % 10)


def new_figure() -> tuple[Figure, Axes, Axes]:
    figure = Figure(figsize=(7.2, 4.2), dpi=100)
    gold_axis = figure.add_subplot()
    proxy_axis = gold_axis.twinx()
    return figure, gold_axis, proxy_axis


def draw_curve(gold_axis: Axes, proxy_axis: Axes, curve: Curve, label: str, color: Any,
               peak: Peak | None = None, onset: Onset | None = None) -> None:
    """Mean gold (solid, 95% band over seeds) on the left axis, proxy (dashed) on the right."""
    x = curve.pressure
    gold = curve.mean_gold()
    gold_axis.plot(x, gold, "-o", color=color, ms=3, label=f"{label}: gold")
    if curve.seeds > 1:
        band = 1.96 * curve.gold_noise()
        gold_axis.fill_between(x, gold - band, gold + band, color=color, alpha=0.15, lw=0)
    proxy = curve.mean_proxy()
    if not np.isnan(proxy).all():
        proxy_axis.plot(x, proxy, "--", color=color, lw=1, alpha=0.8, label=f"{label}: proxy")
    if peak is not None:
        gold_axis.plot([peak.pressure], [peak.gold], "^", color=color, ms=9, mec="black")
        if peak.interval is not None:
            gold_axis.hlines(peak.gold, *peak.interval, color=color, lw=3, alpha=0.5)
    if onset is not None and onset.pressure is not None:
        gold_axis.axvline(onset.pressure, color=color, ls=":", lw=1.2)


def draw_law(axis: Axes, fit: dict[str, Any], x_max: float, color: Any, label: str) -> None:
    kl = np.linspace(0, x_max, 200)
    values = law_value(np.sqrt(kl), fit["alpha"], fit["beta"], fit["form"], fit.get("intercept", 0.0))
    axis.plot(kl, values, ":", color=color, lw=1.6, label=label)
    if fit.get("max_kl") is not None:
        axis.axvspan(0, fit["max_kl"], color=color, alpha=0.06)


def finish(figure: Figure, gold_axis: Axes, proxy_axis: Axes, pressure_kind: str,
           log_x: bool = False) -> None:
    gold_axis.set_xlabel(PRESSURE_LABELS.get(pressure_kind, pressure_kind))
    gold_axis.set_ylabel("gold (solid)")
    proxy_axis.set_ylabel("proxy (dashed)")
    if log_x:
        gold_axis.set_xscale("symlog", linthresh=0.1)
    gold_axis.grid(alpha=0.3)
    handles = [h for h in gold_axis.get_legend_handles_labels()[0]]
    labels = gold_axis.get_legend_handles_labels()[1]
    gold_axis.legend(handles, labels, fontsize=7, loc="best")
    figure.tight_layout()


def to_svg(figure: Figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg")
    text = buffer.getvalue()
    return text[text.index("<svg"):]
