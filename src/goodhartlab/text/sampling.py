"""Sampling a pool of responses per prompt, the input of best-of-n.

Plain ancestral sampling (temperature only, no top-k or top-p), written as its own decoding loop
because a pool has structure `model.generate` cannot use: every prompt is encoded once and its
key/value cache copied to its samples, many prompts share each forward pass, and a sequence that
has ended leaves the batch instead of riding along as padding.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

BatchTokens = list[list[int]]  # the token ids of one batch's responses, in request order


def sample_pool(model: Any, tokenizer: Any, prompts: list[str], pool: int, *, max_new_tokens: int = 32,
                temperature: float = 1.0, batch_size: int = 64, seed: int = 0,
                progress: Callable[[int, int], None] | None = None,
                done: Mapping[int, BatchTokens] | None = None,
                on_batch: Callable[[int, BatchTokens], None] | None = None) -> list[list[str]]:
    """`pool` responses for each prompt, as decoded text without the prompt.

    The same seed, pool and batch size give the same responses. `progress(done, total)` is called
    after each batch of `batch_size` sequences; `done` and `on_batch` resume an interrupted pool
    (see `sample_tokens`).
    """
    tokens = sample_tokens(model, tokenizer, prompts, pool, max_new_tokens=max_new_tokens, temperature=temperature,
                           batch_size=batch_size, seed=seed, progress=progress, done=done, on_batch=on_batch)
    return [tokenizer.batch_decode(responses, skip_special_tokens=True) for responses in tokens]


def sample_tokens(model: Any, tokenizer: Any, prompts: list[str], pool: int, *, max_new_tokens: int = 32,
                  temperature: float = 1.0, batch_size: int = 64, seed: int = 0,
                  progress: Callable[[int, int], None] | None = None,
                  done: Mapping[int, BatchTokens] | None = None,
                  on_batch: Callable[[int, BatchTokens], None] | None = None) -> list[list[list[int]]]:
    """The token ids of `sample_pool`'s responses, up to and including an end-of-sequence token:
    what log-probabilities and KL must score (re-tokenizing the text need not give them back).

    Each batch draws from its own generator, seeded by the seed and the batch's first request, so
    batches are independent: `on_batch(start, tokens)` is called as each is sampled, and batches
    already in `done` (by start) are taken from there instead of sampled again. A pool resumed this
    way is the pool an uninterrupted run gives."""
    import torch

    if pool < 1 or max_new_tokens < 1:
        raise ValueError(f"pool and max_new_tokens must be >= 1, got {pool} and {max_new_tokens}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    requests = [index for index in range(len(prompts)) for _ in range(pool)]
    device = next(model.parameters()).device  # the model's: a policy moved to a GPU samples there
    responses: list[list[list[int]]] = [[] for _ in prompts]
    done = done or {}
    with torch.no_grad():
        for start in range(0, len(requests), batch_size):
            chunk = requests[start:start + batch_size]
            if start in done:
                tokens = done[start]
                if len(tokens) != len(chunk):
                    raise ValueError(f"the resumed batch at request {start} has {len(tokens)} responses, expected "
                                     f"{len(chunk)}: it is not a batch of this pool")
            else:
                generator = torch.Generator(device=device).manual_seed(seed * 1_000_003 + start)
                tokens = _sample_batch(model, tokenizer, [prompts[i] for i in dict.fromkeys(chunk)], chunk,
                                       max_new_tokens, temperature, generator)
                if on_batch is not None:
                    on_batch(start, tokens)
            for index, response in zip(chunk, tokens, strict=True):
                responses[index].append(response)
            if progress is not None:
                progress(min(start + batch_size, len(requests)), len(requests))
    return responses


def _sample_batch(model: Any, tokenizer: Any, unique_prompts: list[str], requests: list[int], max_new_tokens: int,
                  temperature: float, generator: Any) -> list[list[int]]:
    """Token ids of one response per request; `requests` names prompts by index, in first-seen order."""
    import torch

    device = next(model.parameters()).device
    encoded = tokenizer(unique_prompts, return_tensors="pt", padding=True).to(device)
    attention = encoded["attention_mask"]
    if attention.shape[1] and not bool(attention[:, -1].all()):
        raise ValueError("sampling needs a tokenizer that pads on the left (tokenizer.padding_side = 'left')")
    positions = positions_from_mask(attention)
    out = model(input_ids=encoded["input_ids"], attention_mask=attention, position_ids=positions, use_cache=True)
    # each prompt was encoded once; its cache and last logits are copied to every one of its samples
    order = {index: row for row, index in enumerate(dict.fromkeys(requests))}
    rows = torch.tensor([order[index] for index in requests], device=device)
    cache = out.past_key_values
    cache.batch_select_indices(rows)
    logits = out.logits[rows, -1, :]
    attention, next_position = attention[rows], positions[rows, -1] + 1

    eos_ids = torch.tensor(sorted(_end_of_sequence_ids(model, tokenizer)), dtype=torch.long, device=device)
    alive = torch.arange(len(requests), device=device)  # which requests the batch rows are
    tokens: list[list[int]] = [[] for _ in requests]
    for step in range(max_new_tokens):
        sampled = draw_tokens(logits, temperature, generator)
        for row, token in zip(alive.tolist(), sampled.tolist(), strict=True):
            tokens[row].append(token)
        ended = torch.isin(sampled, eos_ids)
        if step == max_new_tokens - 1 or bool(ended.all()):
            break
        if bool(ended.any()):  # finished sequences leave the batch
            keep = (~ended).nonzero().squeeze(1)
            alive, sampled, attention, next_position = alive[keep], sampled[keep], attention[keep], next_position[keep]
            cache.batch_select_indices(keep)
        attention = torch.cat([attention, torch.ones_like(attention[:, :1])], dim=1)
        out = model(input_ids=sampled[:, None], attention_mask=attention, position_ids=next_position[:, None],
                    past_key_values=cache, use_cache=True)
        cache, logits, next_position = out.past_key_values, out.logits[:, -1, :], next_position + 1
    return tokens


def positions_from_mask(attention_mask: Any) -> Any:
    """Position ids that count only real tokens, so a left-padded row is read as if it were unpadded."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


def _end_of_sequence_ids(model: Any, tokenizer: Any) -> set[int]:
    """The ids `generate` would stop at (the model's generation config), and the tokenizer's own."""
    ids: set[int] = set()
    config = getattr(model, "generation_config", None)
    for value in (getattr(config, "eos_token_id", None), tokenizer.eos_token_id):
        ids.update([value] if isinstance(value, int) else value or [])
    return ids


def draw_tokens(logits: Any, temperature: float, generator: Any) -> Any:
    """One token per row from softmax(logits / temperature), by inverting the cumulative distribution
    with one uniform number per row (`torch.multinomial` over SmolLM2's 49k vocabulary took a seventh
    of all decoding time in a profile)."""
    import torch

    cumulative = torch.softmax(logits.float() / temperature, dim=-1).cumsum(-1)
    uniform = torch.rand(len(cumulative), 1, generator=generator, device=cumulative.device) * cumulative[:, -1:]
    return torch.searchsorted(cumulative, uniform, right=True).clamp(max=cumulative.shape[1] - 1).squeeze(1)
