"""The table and figure of docs/text.md's "Against learned reward models" from the stored runs.

python scripts/rl_learned_table.py [--store goodhartlab-out/results.sqlite] [--figure docs/figures/text-rl-learned.png]

Reads the `text-rl-learned` runs that `goodhartlab run examples/text-rl-learned.yaml` stored (those
with the spec's number of steps, should the store hold runs of an edited copy too). Every
step's gold is the mean over 16 completions; a block of 12 steps is the unit, and the fall from the
best block to the last has a 95% interval that treats the block's steps as independent readings.
The best block is picked after the fact, so that interval is optimistic.
"""

from __future__ import annotations

import argparse

import matplotlib.pyplot as plt
import numpy as np

from goodhartlab.lab.spec import load_spec
from goodhartlab.lab.store import ResultsStore

BLOCK = 12
SPEC = "examples/text-rl-learned.yaml"

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--store", default="goodhartlab-out/results.sqlite")
parser.add_argument("--spec", default=SPEC)
parser.add_argument("--figure", default=None, help="also draw gold, proxy and KL against steps into this file")
args = parser.parse_args()
spec = load_spec(args.spec)
steps = spec.runs[0].config.steps
with ResultsStore(args.store, mode="read") as store:
    runs = sorted((run for run in store.runs(spec.study.study) if run.config["steps"] == steps),
                  key=lambda run: (run.config["proxy_pairs"], run.seed))
if not runs:
    parser.error(f"{args.store} holds no runs of {args.spec}; run goodhartlab run {args.spec} first")

print("| pairs | seed | gold, steps 1–12 | best block: steps (KL) | gold there | proxy: best block → last "
      "| last block: KL | gold there | fall (95% interval) |")
print("|---|---|---|---|---|---|---|---|---|")
if args.figure:
    figure, (gold_axis, proxy_axis, kl_axis) = plt.subplots(1, 3, figsize=(13, 4), dpi=100)
counts = sorted({run.config["proxy_pairs"] for run in runs})
for run in runs:
    log = run.summary["log"]
    step, kl, proxy, gold = (np.array(log[key], dtype=float) for key in ("step", "kl", "proxy", "gold"))
    blocks = [slice(start, start + BLOCK) for start in range(0, len(gold), BLOCK)]
    means = np.array([gold[b].mean() for b in blocks])
    errors = np.array([gold[b].std(ddof=1) / np.sqrt(len(gold[b])) for b in blocks])
    best = int(np.argmax(means))
    fall, half = means[best] - means[-1], 1.96 * np.hypot(errors[best], errors[-1])
    print(f"| {run.config['proxy_pairs']:,} | {run.seed} | {means[0]:.3f} | {step[blocks[best]][0]:.0f}–"
          f"{step[blocks[best]][-1]:.0f} ({kl[blocks[best]].mean():.0f}) | **{means[best]:.3f}** "
          f"| {proxy[blocks[best]].mean():.1f} → {proxy[blocks[-1]].mean():.1f} | {kl[blocks[-1]].mean():.0f} "
          f"| {means[-1]:.3f} | {fall:.3f} ({fall - half:.3f} to {fall + half:.3f}) |")
    if args.figure:
        x = [step[b].mean() for b in blocks]
        style = dict(color=f"C{counts.index(run.config['proxy_pairs'])}", ms=3,
                     label=f"{run.config['proxy_pairs']:,} pairs, seed {run.seed}")
        line = "-o" if run.seed == 0 else ":s"
        gold_axis.errorbar(x, means, yerr=1.96 * errors, fmt=line, capsize=2, **style)
        proxy_axis.plot(x, [proxy[b].mean() for b in blocks], line, **style)
        kl_axis.plot(x, [kl[b].mean() for b in blocks], line, **style)
if args.figure:
    gold_axis.set(xlabel="GRPO step", ylabel="gold (MultiEmo head × fluency)",
                  title=f"gold, {BLOCK}-step means (95% band)")
    proxy_axis.set(xlabel="GRPO step", ylabel="the reward model's own score", title="proxy")
    kl_axis.set(xlabel="GRPO step", ylabel="nats per sequence", title="KL to the reference policy")
    proxy_axis.legend(title="reward model trained on", fontsize=8, loc="upper left")
    figure.tight_layout()
    figure.savefig(args.figure)
    print(f"figure: {args.figure}")
