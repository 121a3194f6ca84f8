"""Regenerate the figures of docs/measure.md from the demo's store: python docs/make_figures.py"""

from pathlib import Path

import matplotlib.pyplot as plt

from goodhartlab.lab import plots
from goodhartlab.lab.demo import run_demo
from goodhartlab.lab.report import curves_by_name
from goodhartlab.lab.store import ResultsStore
from goodhartlab.measure.transitions import find_onset, find_peak

HERE = Path(__file__).parent
report, _ = run_demo(HERE / "figures" / "demo-store", progress=False)
with ResultsStore(HERE / "figures" / "demo-store" / "results.sqlite") as store:
    for study in ("bestofn-goodhart", "ensembles", "transitions"):
        runs = store.runs(study)
        fits = {r.variant: r.summary for r in runs if "fit" in r.summary}
        for index, (name, variants) in enumerate(curves_by_name(store, runs).items()):
            figure, gold_axis, proxy_axis = plots.new_figure()
            for k, (variant, curve) in enumerate(variants.items()):
                color = plt.get_cmap("tab10")(k)
                plots.draw_curve(gold_axis, proxy_axis, curve, variant, color, find_peak(curve), find_onset(curve))
                if variant in fits:
                    plots.draw_law(gold_axis, fits[variant]["early_fit"], float(curve.pressure.max()), color,
                                   f"{variant}: early-data law")
            plots.finish(figure, gold_axis, proxy_axis, next(iter(variants.values())).pressure_kind)
            gold_axis.set_title(f"{study}: {name}", fontsize=9)
            figure.savefig(HERE / "figures" / f"{study}-{index}.png")
            plt.close(figure)
