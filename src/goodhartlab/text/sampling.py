"""Sampling a pool of responses per prompt, the input of best-of-n."""

from __future__ import annotations

from typing import Any


def sample_pool(model: Any, tokenizer: Any, prompts: list[str], pool: int, *, max_new_tokens: int = 32,
                temperature: float = 1.0, batch_size: int = 64, seed: int = 0) -> list[list[str]]:
    """`pool` responses for each prompt, as decoded text without the prompt.

    Many prompts and samples go into one left-padded batch (`batch_size` sequences), so the cost of
    each forward pass is shared; this is what makes pool sampling fast on a CPU.
    """
    import torch

    if pool < 1 or max_new_tokens < 1:
        raise ValueError(f"pool and max_new_tokens must be >= 1, got {pool} and {max_new_tokens}")
    requests = [(i, prompt) for i, prompt in enumerate(prompts) for _ in range(pool)]
    responses: list[list[str]] = [[] for _ in prompts]
    generator_seed = seed
    with torch.no_grad():
        for start in range(0, len(requests), batch_size):
            chunk = requests[start:start + batch_size]
            batch = tokenizer([prompt for _, prompt in chunk], return_tensors="pt", padding=True)
            torch.manual_seed(generator_seed + start)
            out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=True, temperature=temperature,
                                 top_k=0, top_p=1.0, pad_token_id=tokenizer.pad_token_id)
            texts = tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
            for (index, _), text in zip(chunk, texts, strict=True):
                responses[index].append(text)
    return responses
