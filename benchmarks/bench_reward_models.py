"""Reward models on SmolLM2: training throughput of our shared-trunk loop against TRL's RewardTrainer, and
scoring a k-member ensemble with one trunk pass against k separate forward passes.

Both sides of each ratio run in this process on the same pairs, settings and thread count. Training: method bt,
the same frozen blocks, epochs and batch size; pairs/s = pairs x epochs / seconds, our side including its one
trunk pass over the pairs. Scoring: an ensemble of k members scores the held-out answers once with the trunk
shared (`member_scores`), then once per member as k separate models would (trunk and top, member by member).
Pairs: `review_pairs`, MultiEmo reviews' closing words, positive over negative (the slow test's data), read
whole (TRL drops pairs longer than max_length; 64 tokens drops none). Needs the SmolLM2 and
MultiEmo assets. Usage: python benchmarks/bench_reward_models.py [--pairs 96] [--members 4] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from goodhartlab.config import parse_config
from goodhartlab.text.preferences import review_pairs
from goodhartlab.text.reward_models import RewardModelConfig, encode_pairs, load_trunk, train_reward_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=96)
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train, held_out = review_pairs(args.pairs, offset=0), review_pairs(64, offset=args.pairs)
    settings = {"train_layers": 2, "epochs": 2, "max_length": 64, "learning_rate": 1e-3, "batch_size": 8}
    trunk = load_trunk("smollm2-135m-instruct", settings["train_layers"], max_length=settings["max_length"])

    start = time.perf_counter()
    ours = train_reward_model(parse_config(RewardModelConfig, {"method": "bt", **settings}), train, trunk=trunk)
    own_seconds = time.perf_counter() - start
    start = time.perf_counter()
    theirs = train_reward_model(parse_config(RewardModelConfig, {"method": "bt", "trainer": "trl", **settings}), train,
                                trunk=trunk)
    trl_seconds = time.perf_counter() - start
    seen = args.pairs * settings["epochs"]
    print(f"training bt on {args.pairs} pairs x {settings['epochs']} epochs, {settings['train_layers']} trainable "
          f"blocks, {args.threads} thread(s):")
    print(f"  shared-trunk loop   {seen / own_seconds:6.2f} pairs/s ({own_seconds:.1f} s, held-out accuracy "
          f"{ours.accuracy(held_out).mean():.2f})")
    print(f"  TRL RewardTrainer   {seen / trl_seconds:6.2f} pairs/s ({trl_seconds:.1f} s, held-out accuracy "
          f"{theirs.accuracy(held_out).mean():.2f})")
    print(f"  ratio {trl_seconds / own_seconds:.2f}x")

    ensemble = train_reward_model(parse_config(RewardModelConfig, {"method": "ensemble", "members": args.members,
                                                                   **{**settings, "epochs": 1}}),
                                  train, trunk=trunk, encoded=encode_pairs(trunk, train))
    prompts = [p.prompt for p in held_out] * 2
    answers = [p.chosen for p in held_out] + [p.rejected for p in held_out]
    start = time.perf_counter()
    shared = ensemble.member_scores(prompts, answers)
    shared_seconds = time.perf_counter() - start
    start = time.perf_counter()
    separate = np.stack([ensemble.member_scores(prompts, answers, tops=[top])[0] for top in ensemble.tops])
    separate_seconds = time.perf_counter() - start
    assert np.allclose(shared, separate, atol=1e-5)
    print(f"scoring {len(answers)} answers with an ensemble of {args.members}:")
    print(f"  one shared trunk pass  {len(answers) / shared_seconds:7.1f} answers/s ({shared_seconds:.2f} s)")
    print(f"  {args.members} separate passes      {len(answers) / separate_seconds:7.1f} answers/s "
          f"({separate_seconds:.2f} s)")
    print(f"  ratio {separate_seconds / shared_seconds:.2f}x (same scores)")


if __name__ == "__main__":
    main()
