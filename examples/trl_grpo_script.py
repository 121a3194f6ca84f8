"""Your own TRL GRPO script, instrumented with goodhartlab: three added lines measure over-optimization.

    python examples/trl_grpo_script.py           # SmolLM2 on the sentiment task (needs `goodhartlab assets`)
    python examples/trl_grpo_script.py --tiny    # a tiny policy built from a config: seconds, no assets

Afterwards:
    goodhartlab fit runs/trl-grpo/runlog.jsonl                      # the RL-form law, with intervals
    goodhartlab report --add runs/trl-grpo --study trl-grpo --store runs/results.sqlite --out runs/report.html

What goodhartlab adds: `OveroptimizationCallback` (KL in nats per sequence, proxy and gold per
logged step, flushed to runlog.jsonl) and its `gold_reward`, which TRL computes and logs like any
reward function but with weight 0, on every 10th step only.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from goodhartlab.integrations.trl import OveroptimizationCallback, ScorerReward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a character-level GPT-2 and the exclamation task")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--out", default="runs/trl-grpo")
    parser.add_argument("--stop-on-alarm", action="store_true", help="stop training at the detectors' first alarm")
    args = parser.parse_args()

    if args.tiny:
        from goodhartlab.text.tiny import ExclamationTask, tiny_policy

        task, proxy_name = ExclamationTask(), "exclamations"
        model, lr, steps, length = str(tiny_policy(os.path.join(args.out, "policy"))), 5e-3, 40, 16
    else:
        from goodhartlab.text.models import load_policy
        from goodhartlab.text.tasks import resolve_task

        task, proxy_name = resolve_task("sentiment"), "afinn"
        # a folder, so GRPO (beta > 0) can rebuild the reference model from it
        model, lr, steps, length = str(load_policy()[0].config.name_or_path), 2e-5, 60, 24

    # --- goodhartlab: the callback, with the task's gold scorer and the online detectors ------------------
    callback = OveroptimizationCallback(args.out, gold=task.gold(), gold_every=10, monitor=True,
                                        stop_on_alarm=args.stop_on_alarm)

    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[ScorerReward(task.proxy(proxy_name)),   # the proxy: the only reward with weight
                      callback.gold_reward],                  # goodhartlab: gold, weight 0, every 10th step
        args=GRPOConfig(
            output_dir=os.path.join(args.out, "trainer"),
            beta=0.04,                       # > 0: a reference model and a logged KL (GRPO's default is 0)
            reward_weights=[1.0, 0.0],       # goodhartlab: gold is measured, never optimized
            logging_steps=1,                 # one run-log row per step
            max_steps=args.steps or steps, learning_rate=lr, num_generations=4, per_device_train_batch_size=8,
            max_completion_length=length, save_strategy="no", report_to="none", bf16=False),
        train_dataset=Dataset.from_dict({"prompt": task.prompts(64, seed=0)}),
        callbacks=[callback],                # goodhartlab
    )
    trainer.train()

    summary = callback.summary
    print(f"run log: {callback.run_log} ({summary['rows']} rows, gold at {summary['gold_rows']})")
    print(f"gold peaked at step {summary.get('peak_gold_step')} (KL {summary.get('peak_gold_kl', 0):.3g} nats); "
          f"final KL {summary.get('final_kl', 0):.3g}, proxy {summary.get('final_proxy', 0):.3g}, "
          f"gold {summary.get('final_gold', 0):.3g}")
    for alarm in callback.alarms:
        print(f"alarm: {alarm['message']}")
    fit = summary.get("fit")
    if fit:
        print(f"RL-form law: alpha {fit['alpha']:.3g}, beta {fit['beta']:.3g}, fitted gold peak at KL "
              f"{fit['peak_kl'] if fit['peak_kl'] is None else round(fit['peak_kl'], 3)}")
    else:
        print(f"no law fitted: {summary.get('fit_error')}")


if __name__ == "__main__":
    main()
