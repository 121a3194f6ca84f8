"""Run the KL-limits specs through the lab, one run at a time on one torch thread, resuming where a store left off.

    python scripts/kl_limits_runs.py examples/kl-limits.yaml [--variant "budget 10"] [--out goodhartlab-out/kl-limits]

The same as `goodhartlab run SPEC --workers 1` once the `kl_limits` kind is in the lab's registry; until then this
script adds it for its own process (goodhartlab.text.kl_limits: KLLimitsConfig, kl_limits_study). `--variant`
runs only the named variants (repeat it), so variants that depend on another's numbers (the penalty matched to the
budget runs' KL) can follow it.
"""

from __future__ import annotations

import argparse

import torch

from goodhartlab.lab.registry import KINDS, StudyKind
from goodhartlab.lab.spec import load_spec
from goodhartlab.lab.study import run_studies

KIND = StudyKind("kl_limits", "goodhartlab.text.kl_limits:KLLimitsConfig", "goodhartlab.text.kl_limits:kl_limits_study",
                 description="the teacher agent under a total KL budget or a per-token penalty (Cohen et al.)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("specs", nargs="+")
    parser.add_argument("--variant", action="append", default=[], help="run only this variant (repeatable)")
    parser.add_argument("--out", default="goodhartlab-out/kl-limits")
    args = parser.parse_args()
    KINDS.setdefault(KIND.name, KIND)
    torch.set_num_threads(1)  # the runs share two cores with other work
    runs = [run for spec in args.specs for run in load_spec(spec).runs
            if not args.variant or run.variant in args.variant]
    if not runs:
        raise SystemExit(f"no runs match {args.variant}")
    done = run_studies(runs, args.out, workers=1, description="kl-limits runs")
    print(f"{done.sweep.ran} run(s) ran; store {done.store}; report {done.report}")


if __name__ == "__main__":
    main()
