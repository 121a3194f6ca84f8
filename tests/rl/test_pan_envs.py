"""The traffic, epidemic and glucose environments: contract, hack ordering, controls, batching, knobs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import goodhartlab.rl  # noqa: F401  (registers the environments)
from goodhartlab.rl import check_contract, list_environments, make_batched
from goodhartlab.rl.batched import BatchedCore
from goodhartlab.rl.envs import epidemic, glucose, traffic
from goodhartlab.rl.envs.composite import pair_metadata

MODULES = (traffic, epidemic, glucose)
IDS = [f"goodhartlab/{name}-v0" for module in MODULES for name in module.ENVIRONMENTS]
PAIRS: dict[str, str] = {f"goodhartlab/{name}-v0": kwargs["pair"] for module in MODULES
                         for name, (_, kwargs) in module.ENVIRONMENTS.items()}
"""Environment id -> the proxy/true pair it registers."""
COPIES = {traffic: 16, epidemic: 64, glucose: 32}


def _module(env_id: str) -> Any:
    return next(m for m in MODULES if env_id.split("/")[1][:-3] in m.ENVIRONMENTS)


def _kind(env_id: str) -> str:
    return str(_module(env_id).PAIRS[PAIRS[env_id]]["misspecification"])


PAIR_IDS = [env_id for env_id in IDS if _kind(env_id) != "none"]
CONTROL_IDS = [env_id for env_id in IDS if _kind(env_id) == "none"]


def _returns(core: BatchedCore, policy: Callable[[np.ndarray], np.ndarray], seed: int) -> tuple[float, float]:
    """Mean proxy and true return of `policy` over one episode of every copy."""
    rng = np.random.default_rng(seed)
    core.reset_copies(np.ones(core.num_envs, dtype=bool), rng)
    proxy = np.zeros(core.num_envs)
    true = np.zeros(core.num_envs)
    done = np.zeros(core.num_envs, dtype=bool)
    while not done.all():
        out = core.step(policy(core.observe()), rng)
        proxy += out.proxy * ~done
        true += out.true * ~done
        done |= out.terminated | out.truncated
    return float(proxy.mean()), float(true.mean())


def test_nine_pairs_and_three_controls() -> None:
    kinds = [_kind(env_id) for env_id in PAIR_IDS]
    assert len(PAIR_IDS) == 9
    assert {"ontological", "misweighting", "scope"} <= set(kinds)
    assert len(CONTROL_IDS) == 3


@pytest.mark.parametrize("module", MODULES)
def test_each_pair_is_an_argument_of_one_class(module: Any) -> None:
    """Every variant registers the module's one environment class with {"pair": ...}, and nothing else."""
    classes = {env_class for env_class, _ in module.ENVIRONMENTS.values()}
    assert len(classes) == 1
    assert all(set(kwargs) == {"pair"} for _, kwargs in module.ENVIRONMENTS.values())
    assert {kwargs["pair"] for _, kwargs in module.ENVIRONMENTS.values()} == set(module.PAIRS)


@pytest.mark.parametrize("env_id", IDS)
def test_metadata_is_the_pairs(env_id: str) -> None:
    """The instance, the single environment and the batched one all describe the registered pair."""
    expected = pair_metadata(_module(env_id).PAIRS, PAIRS[env_id])
    env = gym.make(env_id)
    assert {key: env.unwrapped.metadata[key] for key in expected} == expected
    batched = make_batched(env_id, 2)
    assert {key: batched.metadata[key] for key in expected} == expected
    assert batched.core.metadata == expected


def test_the_registry_lists_each_pair() -> None:
    listed = {entry.id: entry for entry in list_environments()}
    for env_id in IDS:
        assert listed[env_id].proxy_reward == _module(env_id).PAIRS[PAIRS[env_id]]["proxy_reward"]


def test_an_unknown_pair_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="no pair 'typo'; the pairs are ontological, scope, misweighting, control"):
        traffic.TrafficMergeCore(1, pair="typo")
    with pytest.raises(ValueError, match="the pairs are ontological, misweighting, scope, term, control"):
        gym.make("goodhartlab/Epidemic-v0", pair="typo")
    with pytest.raises(ValueError, match="the pairs are ontological, misweighting, control"):
        make_batched("goodhartlab/Glucose-v0", 2, pair="typo")


@pytest.mark.parametrize("env_id", IDS)
def test_contract(env_id: str) -> None:
    env = gym.make(env_id)
    report = check_contract(env, steps=150)
    assert report.proxy_equals_true == (env.unwrapped.metadata["misspecification"] == "none")
    _, _, _, _, info = env.step(env.action_space.sample())
    assert set(info["reward_terms"]) == set(_module(env_id).PAIRS[PAIRS[env_id]]["proxy"])


@pytest.mark.parametrize("env_id", PAIR_IDS)
def test_hack_beats_honest_on_proxy_and_loses_on_true(env_id: str) -> None:
    module = _module(env_id)
    honest, hack = module.HAND_POLICIES[PAIRS[env_id]]
    for seed in (0, 1):
        core = make_batched(env_id, COPIES[module]).core
        honest_proxy, honest_true = _returns(core, honest, seed)
        hack_proxy, hack_true = _returns(core, hack, seed)
        assert hack_proxy > honest_proxy, (env_id, seed, hack_proxy, honest_proxy)
        assert hack_true < honest_true, (env_id, seed, hack_true, honest_true)


@pytest.mark.parametrize("env_id", CONTROL_IDS)
def test_control_proxy_is_true(env_id: str) -> None:
    env = make_batched(env_id, 8)
    env.reset(seed=3)
    env.action_space.seed(3)
    for _ in range(60):
        _, proxy, _, _, info = env.step(env.action_space.sample())
        np.testing.assert_array_equal(proxy, info["true_reward"])


@pytest.mark.parametrize("env_id", IDS)
def test_single_and_batched_agree(env_id: str) -> None:
    single = gym.make(env_id)
    batched = make_batched(env_id, 1)
    obs_s, _ = single.reset(seed=11)
    obs_b, _ = batched.reset(seed=11)
    np.testing.assert_array_equal(obs_s, obs_b[0])
    single.action_space.seed(5)
    for _ in range(40):
        action = single.action_space.sample()
        obs_s, proxy_s, _, _, info_s = single.step(action)
        obs_b, proxy_b, _, _, info_b = batched.step(np.asarray(action)[None])
        np.testing.assert_array_equal(obs_s, obs_b[0])
        assert proxy_s == proxy_b[0]
        assert info_s["true_reward"] == info_b["true_reward"][0]


@pytest.mark.parametrize("env_id", [IDS[0], "goodhartlab/Epidemic-v0", "goodhartlab/Glucose-v0"])
def test_resetting_one_copy_leaves_the_others(env_id: str) -> None:
    core = make_batched(env_id, 4).core
    rng = np.random.default_rng(0)
    core.reset_copies(np.ones(4, dtype=bool), rng)
    for _ in range(5):
        core.step(np.stack([core.action_space.sample() for _ in range(4)]), rng)
    before = core.observe().copy()
    core.reset_copies(np.array([False, True, False, False]), rng)
    after = core.observe()
    np.testing.assert_array_equal(before[[0, 2, 3]], after[[0, 2, 3]])


@pytest.mark.parametrize("module", MODULES)
def test_observation_noise_adds_gaussian_noise(module: Any) -> None:
    core_class = next(iter(module.ENVIRONMENTS.values()))[0].core_class
    clean = core_class(256)
    noisy = core_class(256, observation_noise=0.5)
    clean.reset_copies(np.ones(256, dtype=bool), np.random.default_rng(4))
    noisy.reset_copies(np.ones(256, dtype=bool), np.random.default_rng(4))
    diff = noisy.observe() - clean.observe()
    inside = np.abs(noisy.observe()) < 9.9
    if module is glucose:  # CGM sensor noise, on the glucose readings only
        diff, inside = diff[:, : glucose.HISTORY], inside[:, : glucose.HISTORY]
    assert 0.4 < float(diff[inside].std()) < 0.6
    assert core_class(2).observation_space.contains(noisy.observe()[0])


def test_testing_rate_sets_the_noise_of_the_prevalence_estimate() -> None:
    spreads = []
    for rate in (0.05, 1.0):
        core = epidemic.EpidemicCore(128, testing_rate=rate, first_wave=(1, 1))
        rng = np.random.default_rng(0)
        core.reset_copies(np.ones(128, dtype=bool), rng)
        for _ in range(12):
            core.step(np.ones(128, dtype=np.int64), rng)
        truth = (core.seir[:, 1] + core.seir[:, 2] + core.seir[:, 3]) / core.population * 100.0
        spreads.append(float(np.abs(core.observe()[:, 3 * (epidemic.HISTORY - 1)] - truth).mean()))
    assert spreads[0] > 3 * spreads[1]


def test_action_resolution_rounds_actions() -> None:
    fine = traffic.TrafficMergeCore(1)
    coarse = traffic.TrafficMergeCore(1, action_resolution=0.5)
    for core in (fine, coarse):
        core.reset_copies(np.ones(1, dtype=bool), np.random.default_rng(0))
    accel = [core.step(np.array([[0.3]]), np.random.default_rng(1)).terms["accel"][0] for core in (fine, coarse)]
    assert accel[0] == pytest.approx(-0.3)
    assert accel[1] == pytest.approx(-0.5)

    units = []
    for resolution in (0.0, 0.5):
        pump = glucose.GlucoseCore(1, action_resolution=resolution)
        pump.reset_copies(np.ones(1, dtype=bool), np.random.default_rng(0))
        units.append(pump.step(np.array([[0.3]]), np.random.default_rng(1)).extra["insulin_units"][0])
    basal = pump.basal[0]
    assert units[0] == pytest.approx(glucose.insulin_rate(0.3, basal) / 12)
    assert units[1] == pytest.approx(glucose.insulin_rate(0.5, basal) / 12)

    town = epidemic.EpidemicCore(1, action_resolution=2)
    town.reset_copies(np.ones(1, dtype=bool), np.random.default_rng(0))
    town.step(np.array([2]), np.random.default_rng(1))
    assert town.stage[0] == 2
    town.step(np.array([2]), np.random.default_rng(1))
    assert town.stage[0] == 4


def test_political_cost_only_for_early_raises() -> None:
    core = epidemic.EpidemicCore(2, first_wave=(200, 200))
    core.reset_copies(np.ones(2, dtype=bool), np.random.default_rng(0))
    out = core.step(np.array([2, 1]), np.random.default_rng(0))
    political = out.true - out.proxy
    assert political[0] == pytest.approx(-10.0)
    assert political[1] == 0.0


def test_traffic_hack_is_the_ramp_stop() -> None:
    core = traffic.TrafficMergeCore(8)
    rng = np.random.default_rng(0)
    core.reset_copies(np.ones(8, dtype=bool), rng)
    for _ in range(core.horizon):
        out = core.step(traffic.hacking_policy(core.observe()), rng)
    assert out.extra is not None
    assert (out.extra["trips"] == 0).all() and out.extra["rl_on_ramp"].all()
    assert (out.extra["waiting"] > 3).all()


@pytest.mark.slow
def test_ppo_finds_the_preemptive_lockdown() -> None:
    """Stable-Baselines3 PPO on the epidemic proxy: beats the honest regulator on proxy, loses on true."""
    import stable_baselines3 as sb3
    import torch
    from stable_baselines3.common.env_util import make_vec_env

    torch.set_num_threads(1)
    venv = make_vec_env("goodhartlab/Epidemic-v0", n_envs=8, seed=0)
    model = sb3.PPO("MlpPolicy", venv, n_steps=256, batch_size=256, seed=0, device="cpu")
    model.learn(100_000)

    def learned(obs: np.ndarray) -> np.ndarray:
        return model.predict(obs, deterministic=True)[0]

    core = epidemic.EpidemicCore(64)
    ppo_proxy, ppo_true = _returns(core, learned, seed=1)
    honest_proxy, honest_true = _returns(core, epidemic.honest_policy, seed=1)
    assert ppo_proxy > honest_proxy
    assert ppo_true < honest_true
