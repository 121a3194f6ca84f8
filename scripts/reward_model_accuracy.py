"""In- and out-of-distribution preference accuracy of BT, GRM, an ensemble and WARM on SmolLM2, over seeds and
two training-set sizes (docs/text.md's reward-model table).

    python scripts/reward_model_accuracy.py [--seeds 3] [--sizes 32 128]

Pairs are gold-labelled without sampling: a positive MultiEmo review over a negative one (gold 1 over 0).
Training and in-distribution test pairs are the closing 20 words of reviews (`review_pairs`); the
out-of-distribution pairs are the *opening* 60 words of other reviews: longer answers, and the part of a
review that sets the scene rather than gives the verdict. Each seed draws its own training reviews and
initializations; the test sets are the same for every method and seed. Writes
docs/data/reward-model-accuracy.json and prints means with 95% t-intervals over seeds, and GRM − BT paired
by seed.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from goodhartlab.config import parse_config
from goodhartlab.text.preferences import review_pairs
from goodhartlab.text.reward_models import METHODS, RewardModelConfig, encode_pairs, load_trunk, train_reward_model

OUT = Path(__file__).resolve().parents[1] / "docs" / "data" / "reward-model-accuracy.json"
SETTINGS = {"train_layers": 1, "epochs": 2, "max_length": 64, "members": 4, "learning_rate": 1e-3}
TEST_PAIRS = 128


def interval(values: list[float]) -> str:
    data = np.asarray(values, dtype=float)
    if len(data) < 2:
        return f"{data.mean():.3f}"
    half = float(stats.t.ppf(0.975, len(data) - 1) * data.std(ddof=1) / math.sqrt(len(data)))
    return f"{data.mean():.3f} [{data.mean() - half:.3f}, {data.mean() + half:.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 128])
    args = parser.parse_args()
    torch.set_num_threads(1)
    in_distribution = review_pairs(TEST_PAIRS, offset=0)
    out_of_distribution = review_pairs(TEST_PAIRS, offset=TEST_PAIRS, words=60, opening=True)
    trunk = load_trunk("smollm2-135m-instruct", SETTINGS["train_layers"], max_length=SETTINGS["max_length"])
    rows = json.loads(OUT.read_text()) if OUT.exists() else []
    done = {(r["method"], r["size"], r["seed"]) for r in rows}
    for size in args.sizes:
        for seed in range(args.seeds):
            train = review_pairs(size, offset=2 * TEST_PAIRS + seed * max(args.sizes))
            encoded = None
            for method in METHODS:
                if (method, size, seed) in done:
                    continue
                encoded = encoded or encode_pairs(trunk, train)
                start = time.perf_counter()
                model = train_reward_model(parse_config(RewardModelConfig, {"method": method, **SETTINGS}), train,
                                           seed=seed, trunk=trunk, encoded=encoded)
                row = {"method": method, "size": size, "seed": seed, "seconds": round(time.perf_counter() - start, 1),
                       "id": float(model.accuracy(in_distribution).mean()),
                       "ood": float(model.accuracy(out_of_distribution).mean())}
                rows.append(row)
                OUT.write_text(json.dumps(rows, indent=1) + "\n")  # a run interrupted keeps what it finished
                print(row, flush=True)
    print("\n| method | pairs | in-distribution accuracy | out-of-distribution accuracy | seconds |")
    print("|---|---|---|---|---|")
    for size in args.sizes:
        for method in METHODS:
            mine = [r for r in rows if r["method"] == method and r["size"] == size]
            print(f"| {method} | {size} | {interval([r['id'] for r in mine])} | {interval([r['ood'] for r in mine])} | "
                  f"{np.mean([r['seconds'] for r in mine]):.0f} |")
    print("\n| pairs | GRM − BT, in-distribution | GRM − BT, out-of-distribution |\n|---|---|---|")
    for size in args.sizes:
        by = {(r["method"], r["seed"]): r for r in rows if r["size"] == size}
        seeds = sorted({s for m, s in by if m == "bt"} & {s for m, s in by if m == "grm"})
        print(f"| {size} | {interval([by['grm', s]['id'] - by['bt', s]['id'] for s in seeds])} | "
              f"{interval([by['grm', s]['ood'] - by['bt', s]['ood'] for s in seeds])} |")


if __name__ == "__main__":
    main()
