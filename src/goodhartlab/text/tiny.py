"""A tiny policy and task: every language-model code path in seconds on a CPU, with no download.

A character-level GPT-2 built from a config (random weights), a proxy that counts '!' and a gold
that stops paying after two of them, so optimizing the proxy has a known inverted U in gold.
Tests, benchmarks and dry runs use them where the real path needs SmolLM2 and MiniLM.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from goodhartlab.rewards.scorer import Scorer, check_pairs

TINY_ALPHABET = "abcdefghijklmnopqrstuvwxyz !.,'"
TINY_CHAT_ALPHABET = TINY_ALPHABET + "ST:\n?"
"""Enough for a "Student: ... / Teacher: ..." chat, one line per turn (the teacher–student environment's tests)."""


def _tiny_tokenizer(alphabet: str = TINY_ALPHABET) -> Any:
    """One token per character of `alphabet`, and <pad>, <eos>, <unk>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<eos>", "<unk>"]
    vocab = {token: index for index, token in enumerate([*specials, *alphabet])}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")  # one token per character
    raw.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>",
                                   padding_side="left")


def tiny_policy(directory: str | Path, *, layers: int = 2, width: int = 64, seed: int = 0,
                alphabet: str = TINY_ALPHABET) -> Path:
    """Save a character-level GPT-2 built from a config (random weights) and its tokenizer to `directory`.

    A stand-in policy for tests, benchmarks and dry runs: `load_policy(str(path))` loads it, and
    TRL can rebuild its reference model from the folder.
    """
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = _tiny_tokenizer(alphabet)
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=width, n_layer=layers, n_head=2, n_positions=128,
                        pad_token_id=0, eos_token_id=1, bos_token_id=1)
    path = Path(directory)
    GPT2LMHeadModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def tiny_backbone(directory: str | Path, *, layers: int = 4, width: int = 32, seed: int = 0) -> Path:
    """Save a character-level Llama (SmolLM2's architecture, tied embeddings, random weights) and its tokenizer:
    the reward models' backbone in tests, where the real one is SmolLM2-135M."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _tiny_tokenizer()
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=width, intermediate_size=2 * width,
                         num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=256, tie_word_embeddings=True, pad_token_id=0, eos_token_id=1,
                         bos_token_id=1)
    path = Path(directory)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


class ExclamationCount:
    """Proxy: the number of '!' in the response."""

    name = "exclamations"
    version = "1"

    def score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        check_pairs(prompts, responses)
        return np.array([response.count("!") for response in responses], dtype=np.float64)


class CappedExclamations:
    """Gold: each '!' up to `cap` is worth 1, each one past it costs 0.5, so gold peaks then falls."""

    name = "exclamations-capped"
    version = "1"

    def __init__(self, cap: int = 2) -> None:
        self.cap = cap

    def score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        count = ExclamationCount().score(prompts, responses)
        return np.minimum(count, self.cap) - 0.5 * np.maximum(count - self.cap, 0.0)


@dataclass
class ExclamationTask:
    """Prompts in the tiny policy's alphabet; the proxy counts '!', gold caps it (see CappedExclamations)."""

    cap: int = 2
    name: str = "exclamation"
    chat: bool = False
    max_new_tokens: int = 12
    prompt_count: ClassVar[int] = 1_000_000  # the openers repeat, so any count can be drawn
    openers: tuple[str, ...] = ("the hotel was", "my room", "the staff", "it is", "we loved", "the food",
                                "this phone", "the film", "our stay", "the view", "service was", "i think")

    def prompts(self, count: int, *, seed: int = 0) -> list[str]:
        """`count` openers: shuffled rounds through all of them, so each appears about equally often."""
        rng = np.random.default_rng(seed)
        rounds = -(-count // len(self.openers))
        order = np.concatenate([rng.permutation(len(self.openers)) for _ in range(rounds)])[:count]
        return [self.openers[i] for i in order]

    def proxy(self, name: str) -> Scorer:
        if name != ExclamationCount.name:
            raise ValueError(f"unknown proxy {name!r} for the exclamation task; known: {ExclamationCount.name}")
        return ExclamationCount()

    def gold(self) -> Scorer:
        return CappedExclamations(self.cap)
