"""Overhead of OveroptimizationCallback on a TRL GRPO run (goal: at most 5% per step).

Baseline, measured in the same run: the same GRPOTrainer (same policy, prompts, seed and
settings) with the proxy as its only reward function and no callback. The instrumented run adds
the callback and the gold scorer as a weight-0 reward function scored every `--gold-every` steps.
Both sample the same completions (gold has weight 0 and draws no random numbers), so what differs
is the cost of the measurement. Two figures:
  - wall clock: median run time of each side over `--repeats` runs in ABBA order; on a shared
    machine this carries the run-to-run noise, printed beside it;
  - accounted: the time spent inside the added code (the callback's on_log and train-end work,
    and every call of the gold reward function, due or not), over the baseline's median run time.
With --monitor the callback also runs the online detectors (goodhartlab.detect.monitor) at every logged step.
Usage: python benchmarks/bench_trl_callback.py [--steps 60] [--gold-every 10] [--repeats 4] [--gold minilm] [--monitor]
       python benchmarks/bench_trl_callback.py --policy smollm2-135m-instruct --steps 6 --repeats 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default="tiny", help="'tiny' (a character GPT-2 built from a config, with the "
                        "exclamation task) or a policy for the sentiment task, e.g. smollm2-135m-instruct")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--gold-every", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for the tiny policy)")
    parser.add_argument("--monitor", action="store_true", help="the callback also runs the online detectors")
    parser.add_argument("--gold", choices=("task", "minilm"), default="task",
                        help="task: the task's own gold; minilm: the sentiment gold (a MiniLM encoder and a "
                        "logistic head, from the asset cache) as a realistic gold cost next to the tiny policy")
    args = parser.parse_args()

    import torch
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback
    from transformers.utils import logging as hf_logging
    from trl import GRPOConfig, GRPOTrainer

    from goodhartlab.integrations.trl import OveroptimizationCallback, ScorerReward
    from goodhartlab.text.tasks import resolve_task
    from goodhartlab.text.tiny import ExclamationTask, tiny_policy

    class TimedReward(ScorerReward):
        """The gold reward function, clocking every call (the cheap None-returning ones included)."""

        wall = 0.0

        def __call__(self, *call_args: Any, **kwargs: Any) -> list[float | None]:
            start = time.perf_counter()
            try:
                return super().__call__(*call_args, **kwargs)
            finally:
                self.wall += time.perf_counter() - start

    class TimedCallback(OveroptimizationCallback):
        wall = 0.0

        def on_log(self, *call_args: Any, **kwargs: Any) -> None:
            start = time.perf_counter()
            super().on_log(*call_args, **kwargs)
            self.wall += time.perf_counter() - start

        def on_train_end(self, *call_args: Any, **kwargs: Any) -> None:
            start = time.perf_counter()
            super().on_train_end(*call_args, **kwargs)
            self.wall += time.perf_counter() - start

    torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore")
    scratch = Path(tempfile.mkdtemp(prefix="bench-trl-"))
    if args.policy == "tiny":
        policy, task, proxy_name, length = str(tiny_policy(scratch / "policy")), ExclamationTask(), "exclamations", 16
    else:
        policy, task, proxy_name, length = args.policy, resolve_task("sentiment"), "vader", 24
    if args.policy == "smollm2-135m-instruct":
        from goodhartlab.text.models import load_policy

        policy = str(load_policy(policy)[0].config.name_or_path)  # the cached local folder
    proxy, gold = task.proxy(proxy_name), task.gold() if args.gold == "task" else resolve_task("sentiment").gold()
    prompts = Dataset.from_dict({"prompt": task.prompts(32, seed=0)})

    def run(instrumented: bool, index: int) -> tuple[float, float, float, TimedCallback]:
        out = scratch / f"run-{index}"
        gold_reward = TimedReward(gold, every=args.gold_every, name="gold")
        callback = TimedCallback(out / "log", gold=gold_reward, monitor=args.monitor)
        reward_funcs: list[Any] = [ScorerReward(proxy, name="proxy")]
        config: dict[str, Any] = dict(
            output_dir=str(out), beta=0.05, num_generations=4, per_device_train_batch_size=8,
            max_completion_length=length, learning_rate=5e-3 if args.policy == "tiny" else 1e-5,
            max_steps=args.steps, logging_steps=1, save_strategy="no", report_to="none", bf16=False,
            gradient_checkpointing=False, disable_dropout=True, seed=0, disable_tqdm=True, use_cpu=True)
        if instrumented:
            reward_funcs.append(gold_reward)
            config["reward_weights"] = [1.0, 0.0]
        trainer = GRPOTrainer(model=policy, args=GRPOConfig(**config), train_dataset=prompts,
                              reward_funcs=reward_funcs, callbacks=[callback] if instrumented else None)
        trainer.remove_callback(PrinterCallback)  # both sides: no metrics dict printed per step
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
        added = callback.wall + gold_reward.wall
        print(f"    {'with callback' if instrumented else 'baseline     '} {1000 * seconds / args.steps:7.1f} ms/step"
              + (f"   ({1000 * added / args.steps:.2f} ms/step inside the added code)" if instrumented else ""),
              flush=True)
        final_proxy = next(e["reward"] for e in reversed(trainer.state.log_history) if "reward" in e)
        return seconds, added, final_proxy, callback

    run(True, -1)  # warm-up: imports, allocator, first-call costs
    plain, measured = [], []
    for repeat in range(args.repeats):  # ABBA order, so neither side always runs first
        for instrumented in (False, True) if repeat % 2 == 0 else (True, False):
            (measured if instrumented else plain).append(run(instrumented, 2 * repeat + instrumented))
    base_s = statistics.median(r[0] for r in plain)
    with_s = statistics.median(r[0] for r in measured)
    added_s = statistics.median(r[1] for r in measured)
    callback = measured[-1][3]
    same = all(p[2] == m[2] for p, m in zip(plain, measured, strict=True))
    spread = [100 * (r[0] - base_s) / base_s for r in plain]
    print(f"GRPO with OveroptimizationCallback{' and its detectors' if args.monitor else ''}, policy {args.policy}, "
          f"{args.steps} steps of 8 completions, "
          f"gold ({gold.name}) every {args.gold_every} steps, {args.threads} thread(s), {args.repeats} runs a side")
    print(f"  baseline (proxy only, no callback): {1000 * base_s / args.steps:8.2f} ms/step (median)")
    print(f"  with callback and weight-0 gold:    {1000 * with_s / args.steps:8.2f} ms/step (median)")
    print(f"  overhead, wall clock: {100 * (with_s - base_s) / base_s:+.1f}% (baseline runs spread "
          f"{min(spread):+.1f}% to {max(spread):+.1f}% around their median)")
    print(f"  overhead, accounted:  {100 * added_s / base_s:+.2f}% ({1000 * added_s / args.steps:.2f} ms/step inside "
          f"the callback and the gold reward; gold scored {callback.gold_reward.scored if callback.gold_reward else 0}"
          f" of {args.steps} batches)")
    print(f"  rows logged: {len(callback.rows)}   same trajectory with and without: {'yes' if same else 'no'}")


if __name__ == "__main__":
    main()
