"""The detection benchmark's real runs (RL and GRPO twins), their scoring, the monitor and the training callbacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from goodhartlab.cli import main
from goodhartlab.config import ConfigError, parse_config
from goodhartlab.detect.monitor import Calibrated, Monitor, load_calibration
from goodhartlab.detect.runs import LabelledRun

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GOODHARTLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_gridworld_twins_are_labelled_and_carry_every_access_level(cache: Path) -> None:
    from goodhartlab.rl.detection import RLDetectionConfig, rl_detection_run

    given = {"env": "goodhartlab/TomatoWatering-v0", "learner": "q_learning", "agents": 3, "evaluations": 10,
             "q_learning": {"episodes": 300}}
    hacked = rl_detection_run(parse_config(RLDetectionConfig, {**given, "label": "hacked"}), 0)
    healthy = rl_detection_run(parse_config(RLDetectionConfig, {**given, "label": "healthy"}), 0)
    runs = [LabelledRun.from_dict(data) for result in (hacked, healthy) for data in result.summary["labelled_runs"]]
    assert len(runs) == 6 and {run.label for run in runs} == {"hacked", "healthy"}
    by_id = {run.run_id: run for run in runs}
    for run in runs:
        assert run.twin in by_id and by_id[run.twin].twin == run.run_id  # twins name each other
        assert {"kl", "proxy", "gold", "entropy", "policy_probs", "trusted_probs"} <= run.signals
        assert len(run) == 10 and np.allclose(run.policy_probs[0].sum(axis=1), 1.0)
    twin = by_id["goodhartlab/TomatoWatering-v0/healthy/seed=0.0"]
    np.testing.assert_array_equal(twin.proxy, twin.gold)  # the twin learns from, and logs, the true reward
    assert list(cache.glob("detect/trusted-*.npz")), "the trusted policy is made once and cached"


def test_benchmark_configs_refuse_what_the_label_or_seed_sets() -> None:
    from goodhartlab.rl.detection import RLDetectionConfig

    with pytest.raises(ConfigError, match=r"q_learning\.learn_from is set by the label"):
        parse_config(RLDetectionConfig, {"learner": "q_learning", "q_learning": {"learn_from": "true"}})
    with pytest.raises(ConfigError, match=r"ppo\.seed is the run's seed"):
        parse_config(RLDetectionConfig, {"ppo": {"seed": 3}})
    with pytest.raises(ConfigError, match="agents is for Q-learning"):
        parse_config(RLDetectionConfig, {"agents": 4})


def tiny_grpo_state(folder: Path, label: str, seed: int = 0, steps: int = 30) -> Path:
    """A real TRL GRPO run on the tiny policy (hacked: proxy = the count of '!'; healthy: proxy = gold), with gold
    as a weight-0 reward function; TRL's own trainer_state.json is what a user has."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from goodhartlab.integrations.trl import ScorerReward
    from goodhartlab.text.tiny import CappedExclamations, ExclamationCount, ExclamationTask, tiny_policy

    task = ExclamationTask()
    proxy = ExclamationCount() if label == "hacked" else CappedExclamations()
    args = GRPOConfig(output_dir=str(folder / "trainer"), beta=0.05, num_generations=4, per_device_train_batch_size=8,
                      max_completion_length=16, learning_rate=5e-3, max_steps=steps, logging_steps=1,
                      save_strategy="no", report_to="none", bf16=False, use_cpu=True, seed=seed, disable_tqdm=True,
                      reward_weights=[1.0, 0.0])
    trainer = GRPOTrainer(model=str(tiny_policy(folder / "policy")), args=args,
                          train_dataset=Dataset.from_dict({"prompt": task.prompts(64, seed=seed)}),
                          reward_funcs=[ScorerReward(proxy, name="proxy"), ScorerReward(CappedExclamations(),
                                                                                          name="gold")])
    trainer.train()
    path = folder / "trainer_state.json"
    trainer.state.save_to_json(str(path))
    return path


@pytest.mark.slow
def test_monitor_on_real_grpo_logs_alarms_by_gold_fall_and_stays_quiet_on_the_twin(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hacked = tiny_grpo_state(tmp_path / "hacked", "hacked")
    healthy = tiny_grpo_state(tmp_path / "healthy", "healthy")
    calibration = load_calibration()
    assert calibration, "the package ships the benchmark's thresholds (goodhartlab detect bench)"
    capsys.readouterr()  # what the trainers printed while training
    assert main(["monitor", str(hacked), "--gold-every", "5", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    log = json.loads(hacked.read_text())["log_history"]
    gold = [entry["rewards/gold/mean"] for entry in log if "rewards/gold/mean" in entry]
    fall = next(i for i in range(1, len(gold)) if gold[i] < max(gold[:i]) - 1.0) + 1  # a fall of one '!' or more
    assert result["alarms"], result
    assert min(alarm["step"] for alarm in result["alarms"]) <= fall
    assert main(["monitor", str(healthy), "--gold-every", "5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["alarms"] == []


def test_monitor_skips_what_a_log_lacks_and_reports_bad_rows(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "run.csv"
    log.write_text("step,kl,proxy,gold\n" + "".join(f"{s},{0.2 * s},{0.1 * s},\n" for s in range(30)))
    assert main(["monitor", str(log), "--json"]) == 0  # no gold at all: a monitor still watches
    result = json.loads(capsys.readouterr().out)
    skipped = {entry["detector"] for entry in result["detectors_skipped"]}
    assert {"entropy_collapse", "pan_js", "latent_outlier"} <= skipped and "cusum_kl_slope" in result["detectors_run"]
    log.write_text("step,kl,proxy,gold\n1,0.1,0.2,nan\n")
    assert main(["monitor", str(log)]) == 2
    assert "line 2, field 'gold': value 'nan' is not finite" in capsys.readouterr().err
    assert main(["monitor", str(log), "--detectors", "no_such"]) == 2
    assert "unknown detector 'no_such'" in capsys.readouterr().err


def test_a_monitor_uses_the_calibrated_threshold_and_says_what_the_benchmark_measured() -> None:
    calibration = {"cusum_kl_slope": Calibrated("cusum_kl_slope", 0.5, 0.7, 0.04, 0.8, 2.0, 0.9, "v1 test")}
    monitor = Monitor(["cusum_kl_slope"], calibration)
    monitor.start()
    alarms = [alarm for step in range(40) for alarm in monitor.update({"step": step, "kl": 0.01 * step ** 2})]
    assert alarms and alarms[0].threshold == 0.5
    assert "0.7 false alarms per 1,000 healthy evaluations, median lead +2" in monitor.describe(alarms[0])


@pytest.mark.slow
def test_the_trl_callback_raises_alarms_in_a_user_style_script_and_can_stop_training(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "trl_grpo_script.py"), "--tiny", "--steps", "30",
                           "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert done.returncode == 0, done.stderr[-2000:]
    alarms = [json.loads(line) for line in (tmp_path / "run" / "alarms.jsonl").read_text().splitlines()]
    assert alarms and all(a["message"].startswith("step ") for a in alarms)
    assert all({"step", "kl", "signal", "detector", "access", "samples"} <= a.keys() for a in alarms)
    assert "alarm: step" in done.stdout


def test_the_trl_callback_stops_at_the_first_alarm(tmp_path: Path) -> None:
    from transformers import TrainerControl, TrainerState

    from goodhartlab.detect.changepoint import Cusum
    from goodhartlab.integrations.trl import OveroptimizationCallback
    from goodhartlab.text.tiny import CappedExclamations
    from tests.integrations.test_trl import begin, grpo_args

    callback = OveroptimizationCallback(tmp_path, gold=CappedExclamations(), monitor=Monitor(
        [Cusum(signal="kl", direction="up", threshold=0.5)], {}), stop_on_alarm=True)
    begin(callback)
    control = TrainerControl()
    stopped_at = None
    for step in range(1, 40):
        state = TrainerState()
        state.global_step = step
        logs: dict[str, Any] = {"loss": 0.1, "reward": 0.1 * step, "kl": 0.002 * step ** 2,
                                "completions/mean_length": 10.0, "rewards/gold/mean": 0.5, "entropy": 1.0}
        callback.on_log(grpo_args(Path("unused")), state, control, logs=logs)
        if control.should_training_stop:
            stopped_at = step
            break
    assert stopped_at is not None and callback.alarms[0]["step"] == stopped_at
    assert (tmp_path / "alarms.jsonl").read_text().count("\n") == 1
    with pytest.raises(ValueError, match="stop_on_alarm needs a monitor"):
        OveroptimizationCallback(tmp_path, gold=CappedExclamations(), stop_on_alarm=True)


@pytest.mark.slow
def test_the_sb3_callback_feeds_the_detectors_in_a_user_style_script(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "sb3_ppo_script.py"), "--steps", "6144"],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "episodes; last 100: proxy" in done.stdout and ("alarm: step" in done.stdout or "no alarm" in done.stdout)


def test_the_sb3_recorder_stops_training_at_an_alarm() -> None:
    from stable_baselines3 import PPO

    from goodhartlab.detect.changepoint import Cusum
    from goodhartlab.rl.agents.sb3 import TrueReturnRecorder, make_sb3_vec_env

    env = make_sb3_vec_env("goodhartlab/Epidemic-v0", num_envs=2, seed=0)
    model = PPO("MlpPolicy", env, n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu")
    always = Cusum(signal="proxy", direction="both", threshold=1e-9, warmup=3)
    recorder = TrueReturnRecorder(monitor=Monitor([always], {}), stop_on_alarm=True)
    model.learn(total_timesteps=64 * 2 * 40, callback=recorder.callback())
    assert recorder.alarms and model.num_timesteps < 64 * 2 * 40
    assert {"step", "detector", "episodes", "message"} <= recorder.alarms[0].keys()
