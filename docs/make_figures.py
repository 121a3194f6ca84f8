"""Regenerate the figures of docs/measure.md, docs/rl.md and docs/text.md: python docs/make_figures.py

The demo's studies come from its store; the Pan et al. analogues from examples/rl-training-steps.yaml,
the 256-sample best-of-n studies from examples/text-bestofn.yaml and text-short-review.yaml, and the
1,024-sample one from examples/text-bestofn-1024.yaml (about 70 minutes on 2 cores unless its pools are cached).
"""

from pathlib import Path

from goodhartlab.lab import plots
from goodhartlab.lab.demo import run_demo
from goodhartlab.lab.report import curves_by_name
from goodhartlab.lab.spec import load_spec
from goodhartlab.lab.store import ResultsStore
from goodhartlab.lab.study import run_studies
from goodhartlab.measure.analysis import analyze

HERE = Path(__file__).parent
FIGURES = HERE / "figures"


def draw(store: ResultsStore, study: str) -> None:
    runs = store.runs(study)
    fits = {r.variant: r.summary for r in runs if "fit" in r.summary}
    for index, (name, variants) in enumerate(curves_by_name(store, runs).items()):
        figure, gold_axis, proxy_axis = plots.new_figure()
        for k, (variant, curve) in enumerate(variants.items()):
            color = plots.colors(k)
            reading = analyze(curve)
            plots.draw_curve(gold_axis, proxy_axis, curve, variant, color, reading.peak, reading.onset)
            if variant in fits and "early_fit" in fits[variant]:
                plots.draw_law(gold_axis, fits[variant]["early_fit"], float(curve.pressure.max()), color,
                               f"{variant}: early-data law")
        plots.finish(figure, gold_axis, proxy_axis, next(iter(variants.values())).pressure_kind)
        gold_axis.set_title(f"{study}: {name}", fontsize=9)
        figure.savefig(FIGURES / f"{study}-{index}.png")


run_demo(FIGURES / "demo-store", progress=False)
with ResultsStore(FIGURES / "demo-store" / "results.sqlite", mode="read") as store:
    for study in ("bestofn-goodhart", "ensembles", "transitions", "rl-tomato", "rl-tampering", "rl-capability",
                  "lm-bestofn"):
        draw(store, study)

for name, workers in (("rl-training-steps.yaml", 2), ("text-bestofn.yaml", 1), ("text-short-review.yaml", 1),
                       ("text-bestofn-1024.yaml", 1)):
    spec = load_spec(HERE.parent / "examples" / name)
    run_studies(spec.runs, FIGURES / "demo-store", workers=workers, progress=False)
    with ResultsStore(FIGURES / "demo-store" / "results.sqlite", mode="read") as store:
        draw(store, spec.study.study)
