"""Capability sweeps on the Pan et al. analogues: proxy up, true down, and the transition test.

Pan, Bhatia & Steinhardt (2022) report that more capable agents (here: more PPO training steps)
raise the proxy while the true reward falls, sometimes abruptly (a phase transition). These run
through the same runner, store and curve code as `goodhartlab run`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from goodhartlab.config import ConfigError, parse_config
from goodhartlab.lab.report import curves_by_name
from goodhartlab.lab.runner import RunSpec, run_sweep
from goodhartlab.lab.store import ResultsStore, StudyInfo
from goodhartlab.measure.curve import Curve
from goodhartlab.measure.transitions import detect_transition, find_onset, find_peak
from goodhartlab.rl.studies import CapabilitySweepConfig, capability_sweep

STEPS = [0, 5000, 10000, 20000, 40000, 70000, 100000]
AGENT = {"num_envs": 8, "n_steps": 256, "minibatch_size": 256, "eval_episodes": 16}


def sweep(tmp_path: Path, envs: dict[str, str]) -> dict[str, Curve]:
    runs = [RunSpec(StudyInfo("steps", "steps"), name, "capability_sweep",
                    parse_config(CapabilitySweepConfig, {"env": env, "axis": "training_steps", "values": STEPS,
                                                         "agent": AGENT}), seed)
            for name, env in envs.items() for seed in range(3)]
    run_sweep(runs, tmp_path / "store.sqlite", workers=2, progress=False)
    with ResultsStore(tmp_path / "store.sqlite") as store:
        return curves_by_name(store, store.runs("steps"))["proxy vs true"]


@pytest.mark.slow
def test_training_longer_raises_the_proxy_and_lowers_the_true_reward(tmp_path: Path) -> None:
    """PPO amplifies the last bit of a matrix product, and MKL picks its kernels by CPU: the same
    seeds train other agents on another machine. What holds on every CPU tried is asserted: both
    curves turn while the proxy climbs, and glucose's decline is significant at three seeds. The
    epidemic's fall is significant, and sharp, on some CPUs only (docs/rl.md)."""
    curves = sweep(tmp_path, {"epidemic": "goodhartlab/Epidemic-v0", "glucose": "goodhartlab/Glucose-v0",
                              "control": "goodhartlab/TrafficMergeControl-v0"})
    for name in ("epidemic", "glucose"):
        curve = curves[name]
        assert curve.seeds == 3
        peak = find_peak(curve)
        proxy, true = curve.mean_proxy(), curve.mean_gold()
        at_peak = int(np.flatnonzero(curve.pressure == peak.pressure)[0])
        assert proxy[-1] > proxy[at_peak] > proxy[0], (name, proxy)
        assert true[-1] < true[at_peak], (name, true)
    onset = find_onset(curves["glucose"])
    assert onset.pressure is not None and onset.pressure > find_peak(curves["glucose"]).pressure, onset
    assert not detect_transition(curves["glucose"]).detected  # a gradual decline, not a sharp drop
    assert not detect_transition(curves["control"]).detected
    np.testing.assert_array_equal(curves["control"].proxy, curves["control"].gold)


@pytest.mark.parametrize("axis", ["action_resolution", "observation_noise", "width", "depth"])
def test_capability_sweep_over_each_axis(axis: str) -> None:
    """Environment knobs go to the environment, model-size knobs to the network; each value trains its own agent."""
    config = parse_config(CapabilitySweepConfig, {
        "env": "goodhartlab/Epidemic-v0", "axis": axis, "values": [1, 2],
        "agent": {"total_steps": 512, "num_envs": 2, "n_steps": 128, "minibatch_size": 64, "eval_episodes": 2}})
    result = capability_sweep(config, seed=0)
    points = result.curves["proxy vs true"]
    assert points.pressure == [1.0, 2.0] and points.pressure_kind == axis
    assert all(np.isfinite(points.proxy)) and all(np.isfinite(points.gold))


def test_unknown_axis_is_named() -> None:
    with pytest.raises(ConfigError, match=r"axis must be one of 'training_steps'.*got 'height'"):
        parse_config(CapabilitySweepConfig, {"axis": "height"})
