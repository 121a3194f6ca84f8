"""Reward models on a backbone: every method trains, scores, saves, reloads and drives TRL's GRPOTrainer, on a tiny
character-level Llama built from a config; then BT, GRM, an ensemble and WARM on SmolLM2 (slow, assets)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("trl")

import torch

from goodhartlab.config import ConfigError, parse_config
from goodhartlab.text.preferences import (
    PairError,
    PreferencePair,
    check_preference_pairs,
    read_pairs,
    review_pairs,
    write_pairs,
)
from goodhartlab.text.reward_models import (
    METHODS,
    RewardModelConfig,
    RewardModelError,
    bradley_terry_loss,
    encode_pairs,
    grm_regularizer,
    load_reward_model,
    load_trunk,
    reward_function,
    save_reward_model,
    train_reward_model,
)
from goodhartlab.text.tiny import tiny_backbone, tiny_policy

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def backbone(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tiny_backbone(tmp_path_factory.mktemp("tiny-backbone")))


def toy_pairs(count: int, seed: int = 0) -> list[PreferencePair]:
    """A preference a reward model can learn from characters: more '!' is better."""
    rng = np.random.default_rng(seed)
    prompts = ["the hotel was", "our stay", "the staff", "the view"]
    pairs = []
    for i in range(count):
        low, high = sorted(rng.choice(4, size=2, replace=False))
        body = " good" if i % 2 else " fine"
        pairs.append(PreferencePair(prompts[i % 4], body + "!" * high, body + "!" * low, float(high), float(low)))
    return pairs


def tiny_config(backbone: str, method: str, **overrides: Any) -> RewardModelConfig:
    return parse_config(RewardModelConfig, {"method": method, "backbone": backbone, "train_layers": 2, "epochs": 3,
                                            "learning_rate": 3e-3, "members": 4, **overrides})


def test_the_trunk_and_a_top_are_the_whole_classifier(backbone: str) -> None:
    """Cutting the backbone changes no number: trunk states through an untrained top give the classifier's logits."""
    from goodhartlab.text.reward_models import _right_padded, _stack

    trunk = load_trunk(backbone, 2)
    texts = ["the hotel was great!", "bad", "we loved it, the staff were kind."]
    ids = trunk.token_ids(texts)
    hidden, mask, last = _stack(trunk.states(ids))
    with torch.no_grad():
        split = trunk.top(None).rewards(hidden, mask, last)
        whole = trunk.classifier(*_right_padded(ids, trunk.pad_id)).logits[:, 0]
    torch.testing.assert_close(split, whole, atol=1e-5, rtol=1e-5)


def test_the_losses_are_the_published_formulas() -> None:
    chosen, rejected = torch.tensor([1.0, 0.5]), torch.tensor([0.0, 1.0])
    bt = -torch.nn.functional.logsigmoid(chosen - rejected).mean()
    torch.testing.assert_close(bradley_terry_loss(chosen, rejected), bt)
    centred = bt + 0.01 * ((chosen + rejected) ** 2).mean()
    torch.testing.assert_close(bradley_terry_loss(chosen, rejected, 0.01), centred)
    logits = torch.randn(2, 3, 5)
    targets = torch.tensor([[1, 2, 0], [4, 0, 0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    logp = torch.log_softmax(logits, -1)
    sums = torch.stack([logp[0, 0, 1] + logp[0, 1, 2], logp[1, 0, 4]])
    torch.testing.assert_close(grm_regularizer(logits, targets, mask, 0.1),
                               -torch.nn.functional.logsigmoid(0.1 * sums).mean())


@pytest.mark.parametrize("method", METHODS)
def test_each_method_trains_scores_saves_and_reloads(backbone: str, method: str, tmp_path: Path) -> None:
    pairs = toy_pairs(64)
    model = train_reward_model(tiny_config(backbone, method), pairs, seed=0)
    assert model.accuracy(toy_pairs(32, seed=1)).mean() >= 0.9
    assert len(model.tops) == (4 if method == "ensemble" else 1)
    assert len(model.members) == (4 if method == "warm" else 0)
    folder = save_reward_model(model, tmp_path / method)
    assert (folder / "config.json").is_file() and (folder / "reward_model.json").is_file()
    assert (folder / "members.safetensors").is_file() == (method in ("ensemble", "warm"))
    again = load_reward_model(folder)
    prompts, answers = ["the view", "our stay"], [" good!!!", " fine"]
    np.testing.assert_allclose(again.score(prompts, answers), model.score(prompts, answers), atol=1e-5)
    assert again.version == model.version
    if method in ("ensemble", "warm"):
        assert again.disagreement(prompts, answers).shape == (2,)
    with pytest.raises(RewardModelError, match="exists"):
        save_reward_model(model, folder)  # never overwritten in place


def test_a_single_model_folder_is_a_plain_sequence_classifier(backbone: str, tmp_path: Path) -> None:
    """What TRL and transformers load from the folder scores as the goodhartlab scorer does."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = train_reward_model(tiny_config(backbone, "grm"), toy_pairs(32), seed=0)
    folder = save_reward_model(model, tmp_path / "grm")
    classifier = AutoModelForSequenceClassification.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    texts = ["the view good!!!", "our stay fine"]
    inputs = tokenizer(texts, return_tensors="pt", padding=True, padding_side="right", add_special_tokens=False)
    with torch.no_grad():
        logits = classifier(**inputs).logits[:, 0].numpy()
    np.testing.assert_allclose(logits, model.score(["the view", "our stay"], [" good!!!", " fine"]), atol=1e-5)


def test_bt_through_trls_reward_trainer_learns_the_same_preference(backbone: str) -> None:
    model = train_reward_model(tiny_config(backbone, "bt", trainer="trl", center_rewards_coefficient=0.01),
                               toy_pairs(64), seed=0)
    assert model.accuracy(toy_pairs(32, seed=1)).mean() >= 0.9
    assert model.record["trainer"] == "trl RewardTrainer"


def test_an_ensemble_aggregates_its_members_by_the_chosen_objective(backbone: str) -> None:
    model = train_reward_model(tiny_config(backbone, "ensemble", aggregation="mean"), toy_pairs(32), seed=0)
    prompts, answers = ["the view"] * 3, [" good!", " good!!!", " fine"]
    members = model.combine.normalize(model.member_scores(prompts, answers))  # type: ignore[union-attr]
    np.testing.assert_allclose(model.score(prompts, answers), members.mean(0))
    np.testing.assert_allclose(model.with_aggregation("worst").score(prompts, answers), members.min(0))
    np.testing.assert_allclose(model.with_aggregation("uncertainty", 0.5).score(prompts, answers),
                               members.mean(0) - 0.5 * members.var(0))


@pytest.fixture(scope="module")
def saved(backbone: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("saved")
    return {method: save_reward_model(train_reward_model(tiny_config(backbone, method, epochs=1), toy_pairs(16)),
                                      folder / method) for method in METHODS}


@pytest.mark.parametrize("method", METHODS)
def test_each_trained_model_drives_a_grpo_trainer(saved: dict[str, Path], method: str, tmp_path: Path) -> None:
    """A single model goes to TRL as its folder's path; an ensemble (and WARM's disagreement) as a scorer."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    policy = str(tiny_policy(tmp_path / "policy"))
    reward = str(saved[method]) if method != "ensemble" else reward_function(saved[method])
    args = GRPOConfig(output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=4, num_generations=4,
                      max_completion_length=8, logging_steps=1, report_to="none", save_strategy="no", beta=0.0,
                      disable_tqdm=True, use_cpu=True)
    trainer = GRPOTrainer(model=policy, reward_funcs=[reward], args=args,
                          train_dataset=Dataset.from_dict({"prompt": ["the hotel was", "our stay"] * 4}))
    trainer.train()
    logged = [row for row in trainer.state.log_history if "reward" in row]
    assert logged and all(np.isfinite(row["reward"]) for row in logged)


# -- bad input: one line naming the file, row or field, and nothing half-written ----------------------------------


def test_pairs_that_say_nothing_are_refused_by_row() -> None:
    with pytest.raises(PairError, match=r"my pairs, row 2: fields 'chosen' and 'rejected' are the same text"):
        check_preference_pairs([PreferencePair("p", "a", "b"), PreferencePair("p", "same", "same")], "my pairs")
    with pytest.raises(PairError, match=r"row 1: field 'rejected' is empty"):
        check_preference_pairs([PreferencePair("p", "a", "  ")])
    with pytest.raises(PairError, match="no preference pairs"):
        check_preference_pairs([])


def test_a_pair_file_names_the_row_and_field_of_every_mistake(tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    write_pairs(good, [PreferencePair("p", "a", "b", 1.0, 0.0)])
    assert read_pairs(good) == [PreferencePair("p", "a", "b", 1.0, 0.0)]
    cases = {
        '{"prompt": "p", "chosen": "a"}': r"bad.jsonl, row 2: missing field 'rejected'",
        '{"prompt": "p", "chosen": "a", "rejected": "b", "chosen_gold": NaN}': r"row 2: field 'chosen_gold' is nan",
        '{"prompt": "p", "chosen": "a", "rejected": "b", "rejected_gold": "nan"}':
            r"row 2: field 'rejected_gold' is nan",
        '{"prompt": "p", "chosen": "", "rejected": "b"}': r"row 2: field 'chosen' is empty",
        '{"prompt": "p", "chosen": "b", "rejected": "b"}': r"row 2: fields 'chosen' and 'rejected' are the same",
        '{"prompt": "p", "chosen": "a", "rejected": "b", "label": 1}': r"row 2: unknown field 'label'",
        "not json": r"row 2: not a JSON object",
    }
    for line, message in cases.items():
        bad = tmp_path / "bad.jsonl"
        bad.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n' + line + "\n")
        with pytest.raises(PairError, match=message):
            read_pairs(bad)


def test_an_ensemble_of_one_is_refused_by_field() -> None:
    for method in ("ensemble", "warm"):
        with pytest.raises(ConfigError, match=r"members must be >= 2.*use method bt"):
            parse_config(RewardModelConfig, {"method": method, "members": 1})
    with pytest.raises(ConfigError, match=r"trainer 'trl' \(RewardTrainer\) trains method bt only"):
        parse_config(RewardModelConfig, {"method": "grm", "trainer": "trl"})


def test_a_checkpoint_of_another_backbone_is_refused_by_file(saved: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    other = train_reward_model(tiny_config(str(tiny_backbone(tmp_path / "wide", width=48)), "ensemble", epochs=1),
                               toy_pairs(16))
    wide = save_reward_model(other, tmp_path / "wide-ensemble")
    mixed = tmp_path / "mixed"
    shutil.copytree(saved["ensemble"], mixed)
    shutil.copy(wide / "members.safetensors", mixed / "members.safetensors")
    with pytest.raises(RewardModelError, match=r"mixed/members.safetensors: member 0's tensor .* a member of another "
                                               r"backbone"):
        load_reward_model(mixed)
    shutil.copy(wide / "config.json", mixed / "config.json")
    with pytest.raises(RewardModelError, match=r"mixed/config.json: .* the folder mixes checkpoints of two backbones"):
        load_reward_model(mixed)
    with pytest.raises(RewardModelError, match=r"trained on backbone .* not 'smollm2-135m-instruct'"):
        load_reward_model(saved["bt"], backbone="smollm2-135m-instruct")
    gpt2 = tiny_policy(tmp_path / "gpt2")
    with pytest.raises(RewardModelError, match="the backbone is a GPT2"):
        load_trunk(str(gpt2), 1)
    with pytest.raises(RewardModelError, match="not a reward-model folder"):
        load_reward_model(tmp_path / "nothing-here")


def test_nothing_half_written_when_saving_fails(backbone: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = train_reward_model(tiny_config(backbone, "bt", epochs=1), toy_pairs(8))

    def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(model.trunk.tokenizer, "save_pretrained", broken)
    with pytest.raises(OSError, match="disk full"):
        save_reward_model(model, tmp_path / "rm")
    assert not (tmp_path / "rm").exists() and not list(tmp_path.glob("rm.*"))


def test_metadata_records_how_the_model_was_trained(saved: dict[str, Path]) -> None:
    metadata = json.loads((saved["ensemble"] / "reward_model.json").read_text())
    assert metadata["method"] == "ensemble" and metadata["members"] == 4
    assert metadata["record"]["config"]["members"] == 4 and len(metadata["ensemble"]["location"]) == 4


@pytest.mark.slow
@pytest.mark.assets
def test_on_smollm2_every_method_learns_the_sentiment_preference(tmp_path: Path) -> None:
    """BT, GRM, an ensemble of 4 and WARM of 4 train on SmolLM2-135M from a warm cache on a
    CPU (one shared trunk pass), rank held-out reviews by sentiment, and reload from their folders."""
    train, held_out = review_pairs(96, offset=0), review_pairs(64, offset=96)
    settings = {"train_layers": 1, "epochs": 3, "max_length": 32, "members": 4, "learning_rate": 1e-3}
    trunk = load_trunk("smollm2-135m-instruct", settings["train_layers"], max_length=settings["max_length"])
    encoded = encode_pairs(trunk, train)
    for method in METHODS:
        cfg = parse_config(RewardModelConfig, {"method": method, **settings})
        model = train_reward_model(cfg, train, seed=0, trunk=trunk, encoded=encoded)
        accuracy = float(model.accuracy(held_out).mean())
        assert accuracy >= 0.75, (method, accuracy)  # BT: 0.86 on this machine
        assert len(model.tops) == (4 if method == "ensemble" else 1)
        folder = save_reward_model(model, tmp_path / method)
        again = load_reward_model(folder)
        prompts, answers = ["Review:"] * 2, [held_out[0].chosen, held_out[0].rejected]
        np.testing.assert_allclose(again.score(prompts, answers), model.score(prompts, answers), atol=1e-4)


def test_the_cli_trains_saves_and_evaluates_and_refuses_bad_input_before_training(
        backbone: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from goodhartlab.cli import main

    pairs, held_out = write_pairs(tmp_path / "pairs.jsonl", toy_pairs(64)), write_pairs(tmp_path / "ood.jsonl",
                                                                                        toy_pairs(32, seed=1))
    settings = ["--backbone", backbone, "--train-layers", "2", "--epochs", "3", "--learning-rate", "3e-3"]
    assert main(["rm", "train", str(pairs), "--out", str(tmp_path / "m"), "--method", "warm", *settings]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "m")
    assert main(["rm", "eval", str(tmp_path / "m"), str(pairs), str(held_out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [row["count"] for row in report["sets"]] == [64, 32]
    assert all(row["accuracy"] >= 0.9 and row["interval"][0] <= row["accuracy"] for row in report["sets"])

    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prompt": "p", "chosen": "a!"}\n')
    for argv, expected in [
            (["rm", "train", str(broken), "--out", str(tmp_path / "x"), *settings], "row 1: missing field 'rejected'"),
            (["rm", "train", str(pairs), "--out", str(tmp_path / "x"), "--method", "dpo", *settings], "method"),
            (["rm", "train", str(pairs), "--out", str(tmp_path / "x"), "--method", "ensemble", "--members", "1",
              *settings], "members"),
            (["rm", "train", str(pairs), "--out", str(tmp_path / "m"), *settings], "exists"),
            (["rm", "eval", str(tmp_path / "m"), str(broken)], "row 1: missing field 'rejected'")]:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert expected in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "x").exists()
