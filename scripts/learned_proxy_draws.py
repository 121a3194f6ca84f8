"""The learned-proxy table of docs/text.md: each pair count refitted on many draws of its pairs.

python scripts/learned_proxy_draws.py [--task short-review] [--pool 256] [--max-new-tokens 0] [--draws 30]
    [--train-prompts 16] [--train-pool 32] [--pairs 16,64,256,1024,4096] [--seed 0]

Reuses the pools and features that `goodhartlab run examples/text-short-review.yaml` (or
`examples/text-bestofn-1024.yaml`, with `--task sentiment --pool 1024 --max-new-tokens 64
--train-prompts 1024 --train-pool 2 --pairs 16,64,256,1024`) cached, or samples them first.

Prints, per number of pairs, gold at the peak n of the mean curve and at the largest n, the fall
between them, the spread of gold at the largest n over draws, how many draws' own curves turn
before the largest n (and where), the median n of a draw's own peak, how many fall more than 0.02,
the mean fall after a draw's own peak, and the words of the proxy's pick at the largest n; then
whether a draw's own peak comes later, and its fall is smaller, with more pairs (rank correlations
over all draws, with permutation p-values).
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.stats import spearmanr

from goodhartlab.config import parse_config
from goodhartlab.text.bestofn import BestOfNConfig
from goodhartlab.text.learned_proxy import learned_proxy_draws

PERMUTATIONS = 2000

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--task", default="short-review")
parser.add_argument("--prompts", type=int, default=16)
parser.add_argument("--pool", type=int, default=256)
parser.add_argument("--max-new-tokens", type=int, default=0, help="response length (0: the task's own)")
parser.add_argument("--train-prompts", type=int, default=16,
                    help="prompts the pairs are drawn from (default 16, as in the docs' first tables)")
parser.add_argument("--train-pool", type=int, default=32,
                    help="samples per training prompt (default 32; 2: each comparison its own prompt and responses)")
parser.add_argument("--draws", type=int, default=30)
parser.add_argument("--seed", type=int, default=0, help="the study's seed: its prompts, pools and training samples")
parser.add_argument("--pairs", default="16,64,256,1024,4096", help="comma-separated pair counts")
args = parser.parse_args()
configs = []
for pairs in args.pairs.split(","):  # every count checked before the first is fitted
    try:
        configs.append(parse_config(BestOfNConfig, {
            "task": args.task, "prompts": args.prompts, "pool": args.pool, "max_new_tokens": args.max_new_tokens,
            "proxy": "learned", "proxy_pairs": int(pairs), "train_prompts": args.train_prompts,
            "train_pool": args.train_pool}))
    except ValueError as error:
        parser.error(str(error))

print(f"{args.task}: {args.prompts} prompts x pool {args.pool}, seed {args.seed}, {args.draws} draws of pairs "
      "per count")
print("| pairs | peak n | gold at the peak | gold at the largest n | fall | SD over draws "
      "| draws that turn before the largest n (at n) | median peak n of a draw | draws falling > 0.02 "
      "| mean fall after a draw's peak | words |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
trend: list[tuple[int, int, float]] = []  # (pairs, a draw's peak n, its fall after that peak), over all draws
for config in configs:
    pairs = config.proxy_pairs
    draws = learned_proxy_draws(config, args.seed, args.draws)
    gold = draws["gold"].mean(axis=0)
    peak = int(np.argmax(gold))
    spread = f"{draws['gold'][:, -1].std(ddof=1):.3f}" if len(draws["gold"]) > 1 else "one draw"
    if len(draws["gold"]) < args.draws:
        spread += " (all pairs)"
    # Each draw is a proxy a user could have trained: where its own curve turns, and how far it falls.
    draw_peaks = np.argmax(draws["gold"], axis=1)
    draw_falls = draws["gold"].max(axis=1) - draws["gold"][:, -1]
    turned = draw_peaks < len(draws["ns"]) - 1
    turn_ns = [draws["ns"][i] for i in draw_peaks[turned]]
    where = "" if not turn_ns else f" ({min(turn_ns)})" if min(turn_ns) == max(turn_ns) else \
        f" ({min(turn_ns)}–{max(turn_ns)})"
    turns = f"{turned.sum()} / {len(turned)}{where}"
    median_peak = np.median(np.asarray(draws["ns"])[draw_peaks])
    if len(draws["gold"]) > 1:  # a count with one draw (all its pairs) has no spread to rank
        trend += [(pairs, draws["ns"][index], fall) for index, fall in zip(draw_peaks, draw_falls, strict=True)]
    print(f"| {pairs:,} | {draws['ns'][peak]} | {gold[peak]:.3f} | {gold[-1]:.3f} | {gold[peak] - gold[-1]:.3f} "
          f"| {spread} | {turns} | {median_peak:g} | {(draw_falls > 0.02).sum()} / {len(draw_falls)} "
          f"| {draw_falls.mean():.4f} | {draws['words'][:, -1].mean():.1f} |", flush=True)

# Does a proxy hold up longer with more pairs? Rank-correlate each draw's own peak n and its fall after
# that peak with its number of pairs; the permutation p-value is one-sided, in Gao et al.'s direction.
if len({pairs for pairs, _, _ in trend}) > 1:
    counts, peak_ns, falls = (np.array(column, dtype=np.float64) for column in zip(*trend, strict=True))
    rng = np.random.default_rng(0)
    for name, values, sign in (("peak n", peak_ns, 1), ("fall after its peak", falls, -1)):
        observed = spearmanr(counts, values).statistic
        shuffled = np.array([spearmanr(rng.permutation(counts), values).statistic for _ in range(PERMUTATIONS)])
        p_value = (1 + np.sum(sign * shuffled >= sign * observed)) / (1 + PERMUTATIONS)
        print(f"over {len(counts)} draws: Spearman rho(pairs, a draw's {name}) = {observed:+.3f}, one-sided "
              f"permutation p = {p_value:.4f} ({PERMUTATIONS:,} permutations)")
