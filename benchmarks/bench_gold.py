"""The hardened gold's cost: seconds per 1,000 responses of `multiemo-coherent` against `multiemo`, same responses.

Baseline, measured in the same run: the old gold (the MultiEmo head on MiniLM, times distinct word bigrams).
The hardened gold adds a Gemma-3-270M pass over each response (at most 64 of its tokens) after a neutral
context. Responses are the stored test samples (tests/text/data/gold_samples.json), repeated to `--responses`.
Models are loaded (and Gemma's first call made) before the clock starts. Needs the MiniLM and Gemma assets.
Usage: python benchmarks/bench_gold.py [--responses 256] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from goodhartlab.text.tasks import ShortReviewTask

SAMPLES = Path(__file__).resolve().parents[1] / "tests" / "text" / "data" / "gold_samples.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--responses", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = json.loads(SAMPLES.read_text())["samples"]
    responses = [rows[i % len(rows)]["response"] for i in range(args.responses)]
    prompts = [""] * len(responses)
    task = ShortReviewTask()
    old, hardened = task.gold("multiemo"), task.gold("multiemo-coherent")
    old.score(prompts[:2], responses[:2])
    hardened.score(prompts[:2], responses[:2])  # loads Gemma
    words = np.mean([len(r.split()) for r in responses])
    tokens = np.mean([len(hardened.coherence.model.token_ids(r)) for r in responses])
    print(f"{len(responses)} responses, {words:.0f} words and {tokens:.0f} Gemma tokens (read, at most 64) on average, "
          f"{args.threads} thread(s)")
    seconds = {}
    for label, gold in (("multiemo (baseline)", old), ("multiemo-coherent", hardened)):
        start = time.perf_counter()
        gold.score(prompts, responses)
        seconds[label] = time.perf_counter() - start
        print(f"{label:<22} {seconds[label]:7.1f} s  {1000 * seconds[label] / len(responses):7.0f} s per 1,000 "
              f"responses", flush=True)
    print(f"ratio: {seconds['multiemo-coherent'] / seconds['multiemo (baseline)']:.1f}x the baseline's time")


if __name__ == "__main__":
    main()
