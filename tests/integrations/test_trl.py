"""The TRL callback on a real GRPOTrainer run (a tiny character-level GPT-2), its KL units and its errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("trl")

from transformers import TrainerCallback, TrainerControl, TrainerState
from trl import GRPOConfig, GRPOTrainer

from goodhartlab.integrations.trl import (
    LogKeys,
    MissingMetricError,
    OveroptimizationCallback,
    ScorerReward,
    as_text,
)
from goodhartlab.lab.report import build_report
from goodhartlab.lab.store import ResultsStore
from goodhartlab.measure.runlog import read_run_log
from goodhartlab.text.tiny import CappedExclamations, ExclamationCount, ExclamationTask, tiny_policy

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_policy(tmp_path_factory.mktemp("tiny-policy"))


def grpo_args(out: Path, **overrides: Any) -> GRPOConfig:
    settings: dict[str, Any] = dict(
        output_dir=str(out), beta=0.05, reward_weights=[1.0, 0.0], num_generations=4, per_device_train_batch_size=8,
        max_completion_length=12, learning_rate=5e-3, max_steps=8, logging_steps=1, save_strategy="no",
        report_to="none", bf16=False, gradient_checkpointing=False, disable_dropout=True, seed=0, use_cpu=True)
    return GRPOConfig(**{**settings, **overrides})


def dataset() -> Any:
    from datasets import Dataset

    return Dataset.from_dict({"prompt": ExclamationTask().prompts(16, seed=0)})


class RunLogLines(TrainerCallback):
    """Counts the run log's lines at each log event, after the callback under test has written its row."""

    def __init__(self, path: Path) -> None:
        self.path, self.lines = path, []

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        if logs and "loss" in logs:
            self.lines.append(len(self.path.read_text().splitlines()))


def test_user_grpo_script_logs_kl_in_nats_per_sequence_proxy_and_gold_at_its_cadence(policy: Path,
                                                                                    tmp_path: Path) -> None:
    # What a user writes: their own GRPO script, plus the callback and its gold reward with weight 0.
    callback = OveroptimizationCallback(tmp_path / "run", gold=CappedExclamations(), gold_every=3)
    lines = RunLogLines(callback.run_log)
    trainer = GRPOTrainer(model=str(policy), args=grpo_args(tmp_path / "trainer"), train_dataset=dataset(),
                          reward_funcs=[ScorerReward(ExclamationCount()), callback.gold_reward],
                          callbacks=[callback, lines])
    trainer.train()

    rows = [json.loads(line) for line in callback.run_log.read_text().splitlines()]
    assert [row["step"] for row in rows] == list(range(1, 9))
    assert lines.lines == list(range(1, 9))  # each row is on disk as soon as its step is logged
    # gold on the first step (the baseline) and every third; the scorer ran on those batches only
    assert [row["step"] for row in rows if row["gold"] is not None] == [1, 3, 6]
    assert (callback.gold_reward.calls, callback.gold_reward.scored) == (8, 3)

    history = [entry for entry in trainer.state.log_history if "kl" in entry]
    assert len(history) == 8
    for row, entry in zip(rows, history, strict=True):
        assert row["kl"] == pytest.approx(entry["kl"] * entry["completions/mean_length"], rel=1e-9)
        assert row["kl_logged"] == entry["kl"]
        assert row["proxy"] == entry["reward"] == entry["rewards/exclamations/mean"]  # gold has weight 0
        assert row["gold"] == entry["rewards/gold/mean"]
        assert row["length"] == entry["completions/mean_length"]
    kl = np.array([row["kl"] for row in rows])
    assert kl[0] == pytest.approx(0.0, abs=1e-6)  # the first batch is scored by the reference policy itself
    assert np.all(np.isfinite(kl)) and np.all(kl >= 0) and kl[-1] > 0.1

    log = read_run_log(callback.run_log)
    assert len(log) == 8 and log.has_gold.sum() == 3
    np.testing.assert_allclose(log.kl, kl)
    assert log.curve().pressure.size == 3
    trainer.state.save_to_json(str(tmp_path / "trainer_state.json"))  # TRL's own log, read the same way
    np.testing.assert_allclose(read_run_log(tmp_path / "trainer_state.json").kl, kl)

    # the text behind the gold curve: two completions of each batch gold scored, with their own gold
    samples = read_rows(callback.samples_log)
    assert [sample["step"] for sample in samples] == [1, 1, 3, 3, 6, 6]
    for sample in samples:
        assert sample["score"] == CappedExclamations().score([sample["prompt"]], [sample["completion"]])[0]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["samples"] == samples
    assert summary["gold_rows"] == 3 and summary["log"]["step"] == list(range(1, 9))
    assert "fit_error" in summary and "too few points" in summary["fit_error"]  # 3 gold points, 3 parameters
    assert json.loads((tmp_path / "run" / "config.json").read_text())["args"]["max_steps"] == 8
    # the lab adds the callback's folder to a store; the callback itself knows no store
    with ResultsStore(tmp_path / "results.sqlite") as store:
        added = store.add_run_dir(tmp_path / "run", study="tiny-grpo")
        assert added.new and not store.add_run_dir(tmp_path / "run", study="tiny-grpo").new
        (run,) = store.runs("tiny-grpo")
        assert store.points(run.run_id)["rl"].gold == [row["gold"] for row in rows if row["gold"] is not None]
        assert run.config["max_steps"] == 8 and run.kind == "trl GRPOConfig"
    assert "tiny-grpo" in build_report(tmp_path / "results.sqlite", tmp_path / "report.html").read_text()


def test_steps_that_reuse_a_sampled_batch_convert_kl_with_that_batchs_length(policy: Path, tmp_path: Path) -> None:
    # num_iterations=2: each sampled batch trains two steps; the second logs KL but no reward or length
    callback = OveroptimizationCallback(tmp_path / "run", gold=CappedExclamations(), gold_every=2)
    trainer = GRPOTrainer(model=str(policy), args=grpo_args(tmp_path / "trainer", num_iterations=2, max_steps=6),
                          train_dataset=dataset(), callbacks=[callback],
                          reward_funcs=[ScorerReward(ExclamationCount()), callback.gold_reward])
    trainer.train()
    rows = read_rows(callback.run_log)
    history = [entry for entry in trainer.state.log_history if "kl" in entry]
    assert [row["step"] for row in rows] == list(range(1, 7))
    assert [row["step"] for row in rows if row["proxy"] is not None] == [1, 3, 5]
    assert [row["step"] for row in rows if row["gold"] is not None] == [1, 3, 5]  # each sampled batch was due
    for index, (row, entry) in enumerate(zip(rows, history, strict=True)):
        length = entry.get("completions/mean_length", history[index - 1].get("completions/mean_length"))
        assert row["kl"] == pytest.approx(entry["kl"] * length, rel=1e-9)
    assert read_run_log(callback.run_log).has_gold.sum() == 3


def test_grpo_with_beta_zero_fails_before_the_first_step(policy: Path, tmp_path: Path) -> None:
    callback = OveroptimizationCallback(tmp_path / "run", gold=CappedExclamations())
    trainer = GRPOTrainer(model=str(policy), args=grpo_args(tmp_path / "trainer", beta=0.0), train_dataset=dataset(),
                          reward_funcs=[ScorerReward(ExclamationCount()), callback.gold_reward], callbacks=[callback])
    with pytest.raises(MissingMetricError, match=r"beta=0\) logs no 'kl'.*set beta > 0"):
        trainer.train()
    assert trainer.state.global_step == 0


def test_grpo_that_would_optimize_gold_stops_at_its_first_log(policy: Path, tmp_path: Path) -> None:
    callback = OveroptimizationCallback(tmp_path / "run", gold=CappedExclamations())
    trainer = GRPOTrainer(model=str(policy), args=grpo_args(tmp_path / "trainer", reward_weights=[0.0, 1.0]),
                          train_dataset=dataset(), callbacks=[callback],
                          reward_funcs=[ScorerReward(ExclamationCount()), callback.gold_reward])
    with pytest.raises(ValueError, match=r"gold reward is reward_funcs\[1\] and has weight 1.0"):
        trainer.train()
    assert trainer.state.global_step == 1


def begin(callback: OveroptimizationCallback, step: int = 0, **args: Any) -> None:
    state = TrainerState()
    state.global_step = step
    callback.on_train_begin(grpo_args(Path("unused"), **args), state, TrainerControl())


def log(callback: OveroptimizationCallback, logs: dict[str, Any], step: int) -> None:
    state = TrainerState()
    state.global_step = step
    callback.on_log(grpo_args(Path("unused")), state, TrainerControl(), logs=logs)


def test_per_token_kl_becomes_nats_per_sequence_and_sequence_kl_is_kept(tmp_path: Path) -> None:
    grpo = OveroptimizationCallback(tmp_path / "grpo", gold=CappedExclamations())
    begin(grpo)
    log(grpo, {"loss": 0.1, "reward": 2.0, "kl": 0.25, "completions/mean_length": 12.0,
               "rewards/gold/mean": 0.5}, 1)
    log(grpo, {"loss": 0.1, "reward": 3.0, "kl": 0.5, "completions/mean_length": 8.0,
               "rewards/gold/mean": None}, 2)
    log(grpo, {"train_runtime": 3.0, "train_loss": 0.1}, 2)  # the end-of-training summary is not a row
    assert [(r["kl"], r["proxy"], r["gold"]) for r in grpo.rows] == [(3.0, 2.0, 0.5), (4.0, 3.0, None)]
    assert "× completions/mean_length" in grpo.kl_source

    ppo = OveroptimizationCallback(tmp_path / "ppo", keys=LogKeys(gold="objective/gold"))
    begin(ppo)
    log(ppo, {"loss": 0.1, "objective/scores": 1.5, "objective/kl": 7.0, "objective/gold": 0.2}, 1)
    assert (ppo.rows[0]["kl"], ppo.rows[0]["proxy"], ppo.rows[0]["gold"]) == (7.0, 1.5, 0.2)

    rloo = OveroptimizationCallback(tmp_path / "rloo", gold=CappedExclamations())  # k1 near the reference: < 0
    begin(rloo)
    log(rloo, {"loss": 0.1, "reward": 1.0, "kl": -0.001, "completions/mean_length": 10.0, "rewards/gold/mean": 0.5}, 1)
    assert (rloo.rows[0]["kl"], rloo.rows[0]["kl_logged"]) == (0.0, -0.001)  # stored at KL's floor, logged kept

    bits = OveroptimizationCallback(tmp_path / "custom", keys=LogKeys(gold="gold", kl="kl_bits",
                                                                      kl_unit="bits_per_sequence"))
    begin(bits)
    log(bits, {"loss": 0.1, "reward": 1.0, "kl_bits": 2.0, "gold": 0.0}, 1)
    assert bits.rows[0]["kl"] == pytest.approx(2.0 * np.log(2.0))


@pytest.mark.parametrize(("logs", "message"), [
    ({"loss": 0.1, "reward": 1.0, "rewards/gold/mean": 0.1}, r"no KL .*looked for 'kl'.*set beta > 0"),
    ({"loss": 0.1, "reward": 1.0, "kl": 0.1, "rewards/gold/mean": 0.1}, r"'kl' is a per-token KL and needs .*"
     r"'completions/mean_length'"),
    ({"loss": 0.1, "kl": 0.1, "completions/mean_length": 4.0, "rewards/gold/mean": 0.1},
     r"no proxy .*'reward' or 'objective/scores'"),
    ({"loss": 0.1, "reward": 1.0, "kl": 0.1, "completions/mean_length": 4.0},
     r"'rewards/gold/mean' is not in the trainer's logs: add callback.gold_reward"),
    ({"loss": 0.1, "reward": float("nan"), "kl": 0.1, "completions/mean_length": 4.0, "rewards/gold/mean": 0.1},
     r"'reward' is nan; a non-finite reward"),
])
def test_a_missing_or_bad_metric_is_named(tmp_path: Path, logs: dict[str, Any], message: str) -> None:
    callback = OveroptimizationCallback(tmp_path, gold=CappedExclamations())
    begin(callback)
    with pytest.raises(MissingMetricError, match=message):
        log(callback, logs, 3)


def test_settings_that_would_optimize_gold_or_lose_units_are_rejected(tmp_path: Path) -> None:
    callback = OveroptimizationCallback(tmp_path, gold=CappedExclamations())
    with pytest.raises(ValueError, match=r"pass reward_weights with 0.0 .*got reward_weights=None"):
        begin(callback, reward_weights=None)
    with pytest.raises(ValueError, match=r"got reward_weights=\[1.0, 1.0\]"):
        begin(callback, reward_weights=[1.0, 1.0])
    with pytest.raises(ValueError, match="needs kl_unit"):
        OveroptimizationCallback(tmp_path, keys=LogKeys(gold="gold", kl="my_kl"))
    with pytest.raises(ValueError, match=r"pass gold= .* or keys=LogKeys\(gold=...\)"):
        OveroptimizationCallback(tmp_path)


def test_gold_at_a_place_with_weight_is_caught_at_the_first_log(tmp_path: Path) -> None:
    callback = OveroptimizationCallback(tmp_path, gold=CappedExclamations())
    begin(callback, reward_weights=[0.0, 1.0])  # a 0 somewhere: passes the check before training
    state = TrainerState()
    state.global_step = 1
    logs = {"loss": 0.1, "reward": 1.0, "kl": 0.1, "completions/mean_length": 4.0,
            "rewards/proxy/mean": 1.0, "rewards/gold/mean": 0.1}  # GRPO's order: reward_funcs' order
    with pytest.raises(ValueError, match=r"gold reward is reward_funcs\[1\] and has weight 1.0"):
        callback.on_log(grpo_args(Path("unused"), reward_weights=[0.0, 1.0]), state, TrainerControl(), logs=logs)
    log(callback, logs, 1)  # with weights [1.0, 0.0] the same logs are fine


def test_a_gold_key_no_log_holds_is_named_when_training_ends(tmp_path: Path) -> None:
    callback = OveroptimizationCallback(tmp_path, keys=LogKeys(gold="rewards/gld/mean"))
    begin(callback)
    for step in (1, 2):
        log(callback, {"loss": 0.1, "reward": 1.0, "kl": 0.1, "completions/mean_length": 4.0,
                       "rewards/gold/mean": 0.1}, step)
    state = TrainerState()
    state.global_step = 2
    with pytest.raises(MissingMetricError, match=r"'rewards/gld/mean' was in none of the trainer's 2 training logs"):
        callback.on_train_end(grpo_args(Path("unused")), state, TrainerControl())
    assert len(read_rows(callback.run_log)) == 2 and (tmp_path / "summary.json").exists()  # nothing lost


def score_gold(callback: OveroptimizationCallback, step: int, completion: str) -> None:
    """What TRL does between a step's start and its log: call the reward functions on the batch."""
    state = TrainerState()
    state.global_step = step - 1
    assert callback.gold_reward is not None
    callback.gold_reward(prompts=["the room"], completions=[completion], trainer_state=state)


def test_a_resumed_run_keeps_the_rows_up_to_its_checkpoint(tmp_path: Path) -> None:
    first = OveroptimizationCallback(tmp_path, gold=CappedExclamations(), gold_every=1)
    begin(first)
    for step in (1, 2, 3, 4):
        score_gold(first, step, "!" * step)
        log(first, {"loss": 0.0, "reward": float(step), "kl": 0.1, "completions/mean_length": 10.0,
                    "rewards/gold/mean": 0.0}, step)
    with first.run_log.open("a") as handle:
        handle.write('{"step": 5, "kl": 1.')  # a row cut short when the process was killed
    resumed = OveroptimizationCallback(tmp_path, gold=CappedExclamations(), gold_every=1)
    begin(resumed, step=2)  # resuming from the checkpoint of step 2
    score_gold(resumed, 3, "wow")
    log(resumed, {"loss": 0.0, "reward": 9.0, "kl": 0.2, "completions/mean_length": 10.0,
                  "rewards/gold/mean": 1.0}, 3)
    assert [(row["step"], row["proxy"]) for row in read_rows(resumed.run_log)] == [(1, 1.0), (2, 2.0), (3, 9.0)]
    assert len(resumed.rows) == 3
    assert [(row["step"], row["completion"]) for row in read_rows(resumed.samples_log)] == [(1, "!"), (2, "!!"),
                                                                                          (3, "wow")]


def test_samples_scored_after_the_last_log_are_kept_and_keep_samples_reaches_a_ready_reward(tmp_path: Path) -> None:
    callback = OveroptimizationCallback(tmp_path / "run", gold=CappedExclamations(), gold_every=1)
    begin(callback)
    score_gold(callback, 1, "!")
    log(callback, {"loss": 0.0, "reward": 1.0, "kl": 0.1, "completions/mean_length": 10.0,
                   "rewards/gold/mean": 1.0}, 1)
    score_gold(callback, 2, "!!")  # logging_steps > 1: this batch is never followed by a log
    state = TrainerState()
    state.global_step = 2
    callback.on_train_end(grpo_args(Path("unused")), state, TrainerControl())
    assert [row["completion"] for row in read_rows(callback.samples_log)] == ["!", "!!"]
    assert [row["completion"] for row in callback.summary["samples"]] == ["!", "!!"]

    reward = ScorerReward(CappedExclamations(), name="gold")
    assert OveroptimizationCallback(tmp_path / "a", gold=reward).gold_reward.keep == 0  # its own setting
    assert OveroptimizationCallback(tmp_path / "b", gold=reward, keep_samples=3).gold_reward.keep == 3
    with pytest.raises(ValueError, match="keep must be a whole number >= 0"):
        OveroptimizationCallback(tmp_path / "c", gold=reward, keep_samples=-1)
    logged_gold = OveroptimizationCallback(tmp_path / "d", keys=LogKeys(gold="my_gold"))
    begin(logged_gold)
    assert logged_gold.run_log.exists() and not logged_gold.samples_log.exists()  # no gold scorer, no samples


def read_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_scorer_reward_scores_only_due_steps_and_reads_chat_messages() -> None:
    reward = ScorerReward(ExclamationCount(), every=4, name="gold")
    assert reward.__name__ == "gold"
    state = TrainerState()
    scored = []
    for step in range(10):
        state.global_step = step
        result = reward(prompts=["a", "b"], completions=["!", "!!"], trainer_state=state)
        if result[0] is not None:
            scored.append(step + 1)
            assert result == [1.0, 2.0]
        else:
            assert result == [None, None]
    assert scored == [1, 4, 8] and reward.scored == 3
    state.global_step = 0  # a new run with the same function starts over
    assert reward(prompts=["a"], completions=["!"], trainer_state=state) == [1.0]

    prompt = [{"role": "system", "content": "be kind"}, {"role": "user", "content": "the room"}]
    completion = [{"role": "assistant", "content": [{"type": "text", "text": "was great!!"}]}]
    assert as_text(prompt, prompt=True) == "the room"
    assert as_text(completion, prompt=False) == "was great!!"
    assert ScorerReward(ExclamationCount())(prompts=[prompt], completions=[completion]) == [2.0]


def test_scorer_reward_reports_non_finite_scores_and_bad_cadence() -> None:
    class Broken:
        name, version = "broken", "0"

        def score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
            return np.array([0.0, np.nan])

    with pytest.raises(ValueError, match=r"'broken' returned 1 non-finite score.*'b!'"):
        ScorerReward(Broken())(prompts=["x", "y"], completions=["a", "b!"])
    with pytest.raises(ValueError, match="every must be a whole number >= 1"):
        ScorerReward(Broken(), every=0)
    with pytest.raises(ValueError, match="keep must be a whole number >= 0"):
        ScorerReward(Broken(), keep=-1)


def test_a_run_folder_averages_equal_kl_and_needs_two_gold_levels_for_a_curve(tmp_path: Path) -> None:
    callback = OveroptimizationCallback(tmp_path / "run", gold=CappedExclamations())
    begin(callback)
    # a first update with zero advantages leaves the policy unchanged: two gold points at KL 0
    for step, (kl, proxy, gold) in enumerate([(0.0, 1.0, 0.2), (0.0, 3.0, 0.4)], start=1):
        log(callback, {"loss": 0.0, "reward": proxy, "kl": kl, "completions/mean_length": 5.0,
                       "rewards/gold/mean": gold}, step)
    with ResultsStore(tmp_path / "results.sqlite") as store:
        lonely = store.add_run_dir(tmp_path / "run", variant="lonely")
        assert store.points(lonely.run_id) == {}
        assert "1 gold-evaluated KL level(s)" in store.runs()[0].summary["curve_error"]
    log(callback, {"loss": 0.0, "reward": 5.0, "kl": 0.2, "completions/mean_length": 5.0,
                   "rewards/gold/mean": None}, 3)
    log(callback, {"loss": 0.0, "reward": 6.0, "kl": 0.3, "completions/mean_length": 5.0,
                   "rewards/gold/mean": 0.1}, 4)
    points = read_run_log(callback.run_log).curve_points()
    assert points.pressure == [0.0, 1.5] and points.proxy == [2.0, 6.0]
    assert points.gold == [pytest.approx(0.3), 0.1]


def test_the_callback_writes_the_scalars_an_export_of_its_run_writes(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from goodhartlab.lab.export import export_store

    callback = OveroptimizationCallback(tmp_path / "run", gold=CappedExclamations(), gold_every=1,
                                        tensorboard=tmp_path / "tb", mlflow=str(tmp_path / "mlruns"))
    begin(callback)
    for step, (kl, gold) in enumerate([(0.5, 0.25), (1.0, None), (2.0, 0.75)], start=1):
        log(callback, {"loss": 0.0, "reward": float(step), "kl": kl / 10, "completions/mean_length": 10.0,
                       "rewards/gold/mean": gold}, step)
    state = TrainerState()
    state.global_step = 3
    callback.on_train_end(grpo_args(Path("unused")), state, TrainerControl())

    live = EventAccumulator(str(tmp_path / "tb"))
    live.Reload()
    assert sorted(live.Tags()["scalars"]) == ["rl/gold", "rl/kl", "rl/proxy"]
    assert [(e.step, e.value) for e in live.Scalars("rl/gold")] == [(1, 0.25), (3, 0.75)]  # no gold at step 2
    assert [(e.step, round(e.value, 6)) for e in live.Scalars("rl/kl")] == [(1, 0.5), (2, 1.0), (3, 2.0)]
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("goodhartlab").experiment_id])
    assert run.info.status == "FINISHED"
    assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "rl/proxy")] == [(1, 1.0), (2, 2.0),
                                                                                                  (3, 3.0)]
    with ResultsStore(tmp_path / "r.sqlite") as store:
        store.add_run_dir(tmp_path / "run")
    export_store(tmp_path / "r.sqlite", "tensorboard", str(tmp_path / "exported"))
    (folder,) = (tmp_path / "exported" / "trl").glob("*/seed-*")
    exported = EventAccumulator(str(folder))
    exported.Reload()
    assert sorted(exported.Tags()["scalars"]) == sorted(live.Tags()["scalars"])  # the same names, live and exported
