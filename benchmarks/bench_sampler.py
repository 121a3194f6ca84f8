"""Best-of-n pool sampling on SmolLM2-135M: tokens per second of `sample_pool` against a plain loop.

Baseline, measured in the same run: one `model.generate` call per prompt with
`num_return_sequences=pool` (pure sampling: top_k=0, top_p=1), the loop a user writes first, in
float32. Ours runs in float32 (same arithmetic, so the gain is the decoding loop: one prefill per
prompt, several prompts per forward pass, finished sequences leaving the batch) and in bfloat16
(the sampling copy of the weights; the gold, proxy and KL never see it). Tokens are counted the
same way for both, by re-tokenizing the responses. Needs the SmolLM2 asset
(`goodhartlab assets --fetch smollm2-135m-instruct-gguf`).
Usage: python benchmarks/bench_sampler.py [--prompts 8] [--pool 32] [--max-new-tokens 32]
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable

import torch

from goodhartlab.text.models import load_policy
from goodhartlab.text.sampling import sample_pool
from goodhartlab.text.tasks import resolve_task


def per_prompt_loop(model: object, tokenizer: object, prompts: list[str], pool: int, max_new_tokens: int,
                    temperature: float) -> list[list[str]]:
    pools = []
    with torch.no_grad():
        for prompt in prompts:
            batch = tokenizer([prompt], return_tensors="pt")  # type: ignore[operator]
            out = model.generate(**batch, do_sample=True, num_return_sequences=pool,  # type: ignore[attr-defined]
                                 max_new_tokens=max_new_tokens, temperature=temperature, top_k=0, top_p=1.0,
                                 pad_token_id=tokenizer.pad_token_id)  # type: ignore[attr-defined]
            pools.append(tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:],  # type: ignore[attr-defined]
                                                skip_special_tokens=True))
    return pools


def timed(label: str, sample: Callable[[], list[list[str]]], tokenizer: object) -> float:
    start = time.perf_counter()
    pools = sample()
    seconds = time.perf_counter() - start
    tokens = sum(len(tokenizer(text)["input_ids"]) for pool in pools for text in pool)  # type: ignore[operator]
    print(f"{label:<34} {seconds:7.1f} s  {tokens:6d} tokens  {tokens / seconds:7.1f} tokens/s", flush=True)
    return tokens / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--pool", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=1.0)
    args = parser.parse_args()
    prompts = resolve_task("sentiment").prompts(args.prompts, seed=0)
    model, tokenizer = load_policy()
    half = copy.deepcopy(model).to(torch.bfloat16)
    print(f"{args.prompts} prompts x pool {args.pool}, up to {args.max_new_tokens} new tokens, "
          f"{torch.get_num_threads()} threads")
    torch.manual_seed(0)
    baseline = timed("per-prompt generate loop, float32",
                     lambda: per_prompt_loop(model, tokenizer, prompts, args.pool, args.max_new_tokens,
                                             args.temperature), tokenizer)
    ours = {dtype: timed(f"sample_pool, {dtype}",
                         lambda m=m: sample_pool(m, tokenizer, prompts, args.pool, max_new_tokens=args.max_new_tokens,
                                                 temperature=args.temperature, batch_size=args.batch_size),
                         tokenizer)
            for dtype, m in (("float32", model), ("bfloat16", half))}
    for dtype, rate in ours.items():
        print(f"speed-up, {dtype}: {rate / baseline:.2f}x")


if __name__ == "__main__":
    main()
