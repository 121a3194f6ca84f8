"""Stable-Baselines3 on goodhartlab environments, unchanged: a VecEnv builder and a true-return recorder.

Our environments are ordinary Gymnasium environments, so SB3 trains on them as they are; the only
thing SB3 does not know about is the true reward in `info["true_reward"]`. `TrueReturnRecorder`
(its `callback()` goes to `model.learn`) sums it per episode next to the proxy return, which is what a
reward-hacking study compares. `sb3_ppo_kwargs` turns a `PPOConfig` into SB3 PPO arguments, so both
implementations can be run with the same network and hyperparameters.

stable_baselines3 is imported inside the functions: it is in the optional `rl` extra.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from goodhartlab.detect.monitor import Monitor
from goodhartlab.detect.rows import RunContext
from goodhartlab.rl.agents.ppo import ACTIVATIONS, PPOConfig
from goodhartlab.rl.rollout import EpisodeReturns

if TYPE_CHECKING:
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import VecEnv


def make_sb3_vec_env(env_id: str, num_envs: int = 1, *, seed: int | None = None, subproc: bool = False,
                     **env_kwargs: Any) -> VecEnv:
    """`num_envs` copies of a registered environment as an SB3 VecEnv (DummyVecEnv, or SubprocVecEnv),
    each wrapped in SB3's Monitor; `env_kwargs` go to the environment's constructor."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    env_kwargs.setdefault("render_mode", None)  # SB3 would ask for rgb_array frames otherwise
    return make_vec_env(env_id, n_envs=num_envs, seed=seed, env_kwargs=env_kwargs,
                        vec_env_cls=SubprocVecEnv if subproc else DummyVecEnv)


def sb3_ppo_kwargs(config: PPOConfig) -> dict[str, Any]:
    """SB3 `PPO(...)` keyword arguments meaning the same as `config` (separate actor and critic
    MLPs of `depth` x `width`, as SB3's MlpPolicy). `config.shared` has no SB3 equivalent; with
    `anneal_lr`, SB3 decays one rollout ahead of ours (it reads its progress after collecting)."""
    import torch

    if config.shared:
        raise ValueError("SB3's MlpPolicy has separate actor and critic networks; use shared=False")
    hidden = [config.width] * config.depth
    lr: Any = config.lr
    if config.anneal_lr:
        def lr(progress_remaining: float) -> float:
            return config.lr * progress_remaining
    return {
        "learning_rate": lr, "n_steps": config.n_steps, "batch_size": config.minibatch_size,
        "n_epochs": config.epochs, "gamma": config.gamma, "gae_lambda": config.gae_lambda,
        "clip_range": config.clip, "clip_range_vf": config.clip_vf,
        "normalize_advantage": config.normalize_advantage, "ent_coef": config.ent_coef,
        "vf_coef": config.vf_coef, "max_grad_norm": config.max_grad_norm, "target_kl": config.target_kl,
        "seed": config.seed, "device": "cpu",
        "policy_kwargs": {"net_arch": {"pi": hidden, "vf": hidden}, "activation_fn": ACTIVATIONS[config.activation],
                          "ortho_init": config.ortho_init, "log_std_init": config.log_std_init,
                          "optimizer_class": torch.optim.Adam, "optimizer_kwargs": {"eps": 1e-5}},
    }


class TrueReturnRecorder:
    """Every finished episode's proxy return, true return and length in an SB3 run.

    Pass `recorder.callback()` to `model.learn`. The proxy return is Monitor's (the raw environment
    reward, before any VecNormalize); the true return sums `info["true_reward"]` (NaN if the
    environment gives none). Both are counted by `rollout.EpisodeReturns`, as in our own loops (an
    SB3 VecEnv resets a finished copy on the same step). `history` gets one row per rollout, taken
    after its update: (steps, seconds since training started, mean proxy and true return of the
    last `window` episodes). With `stop_at_proxy`, training stops after the first rollout whose
    recent mean proxy return reaches it.

    With `monitor` (a `goodhartlab.detect.monitor.Monitor`, detector names, or True for the default set with the
    benchmark's thresholds), each rollout's row (steps, the recent proxy return, the policy's entropy, and the
    recent true return on every `gold_every`-th rollout) goes to the detectors; each alarm is kept in `alarms` with
    the episodes that ended around it, and `stop_on_alarm` ends training at the first.
    """

    def __init__(self, *, window: int = 100, stop_at_proxy: float | None = None,
                 monitor: Monitor | Sequence[str] | bool | None = None, gold_every: int | None = 1,
                 stop_on_alarm: bool = False) -> None:
        if stop_on_alarm and not monitor:
            raise ValueError("stop_on_alarm needs a monitor: pass monitor=True (the default detectors) or names")
        if gold_every is not None and gold_every < 1:
            raise ValueError(f"gold_every must be a whole number >= 1 (or None: no gold), got {gold_every}")
        self.window = window
        self.stop_at_proxy = stop_at_proxy
        self.monitor: Monitor | None = (monitor if isinstance(monitor, Monitor) else Monitor() if monitor is True
                                        else Monitor(list(monitor)) if monitor else None)
        self.gold_every, self.stop_on_alarm = gold_every, stop_on_alarm
        self.alarms: list[dict[str, Any]] = []
        self._alarmed = False
        self.steps: list[int] = []
        self.proxy_returns: list[float] = []
        self.true_returns: list[float] = []
        self.lengths: list[int] = []
        self.history: list[tuple[int, float, float, float]] = []
        self._start = time.perf_counter()
        self._pending: tuple[int, float, float] | None = None
        self._episodes = EpisodeReturns(0)

    def recent(self) -> tuple[float, float]:
        """Mean proxy and true return of the last `window` episodes (NaN before any)."""
        if not self.proxy_returns:
            return float("nan"), float("nan")
        return float(np.mean(self.proxy_returns[-self.window:])), float(np.mean(self.true_returns[-self.window:]))

    def reached(self) -> bool:
        if self.stop_on_alarm and self._alarmed:
            return True
        return self.stop_at_proxy is not None and bool(self.history) and self.history[-1][2] >= self.stop_at_proxy

    def start(self, num_envs: int) -> None:
        self._episodes = EpisodeReturns(num_envs)
        self._start = time.perf_counter()
        self.alarms, self._alarmed = [], False
        if self.monitor is not None:
            self.monitor.start(RunContext(environment="stable-baselines3"))

    def step(self, steps: int, rewards: np.ndarray, dones: np.ndarray, infos: list[dict[str, Any]]) -> None:
        true = np.array([info.get("true_reward", np.nan) for info in infos], dtype=np.float64)
        ended = self._episodes.step(rewards, true, np.asarray(dones, dtype=bool))
        if ended is None:
            return
        for i, proxy, true_return, length in zip(ended.index, ended.proxy_return, ended.true_return, ended.length,
                                                 strict=True):
            episode = infos[i].get("episode")
            self.steps.append(steps)
            self.proxy_returns.append(float(episode["r"]) if episode else float(proxy))
            self.true_returns.append(float(true_return))
            self.lengths.append(int(length))

    def rollout_end(self, steps: int, entropy: float | None = None) -> None:
        self._pending = (steps, *self.recent())
        if self.monitor is not None and self.proxy_returns:
            self._watch(steps, entropy)

    def _watch(self, steps: int, entropy: float | None) -> None:
        assert self.monitor is not None
        proxy, true = self.recent()
        rollouts = len(self.history) + 1
        gold_due = self.gold_every is not None and (rollouts == 1 or rollouts % self.gold_every == 0)
        row = {"step": float(steps), "proxy": proxy, "gold": true if gold_due and np.isfinite(true) else None,
               "entropy": entropy}
        for alarm in self.monitor.update(row):
            self._alarmed = True
            around = [{"step": s, "proxy_return": p, "true_return": t} for s, p, t in
                      zip(self.steps[-4:], self.proxy_returns[-4:], self.true_returns[-4:], strict=True)]
            self.alarms.append({**alarm.to_dict(), "message": self.monitor.describe(alarm), "episodes": around})

    def update_end(self) -> None:
        if self._pending is not None:
            self.history.append((self._pending[0], time.perf_counter() - self._start, *self._pending[1:]))
            self._pending = None

    def callback(self) -> BaseCallback:
        """The SB3 callback feeding this recorder."""
        from stable_baselines3.common.callbacks import BaseCallback

        recorder = self

        class _Callback(BaseCallback):
            def __getattr__(self, name: str) -> Any:  # the recorder's episodes and history, read off the callback
                if name.startswith("_"):
                    raise AttributeError(name)
                return getattr(recorder, name)

            def _on_training_start(self) -> None:
                recorder.start(self.training_env.num_envs)

            def _on_step(self) -> bool:
                recorder.step(self.num_timesteps, self.locals["rewards"], self.locals["dones"], self.locals["infos"])
                return not recorder.reached()

            def _on_rollout_end(self) -> None:
                logged = getattr(self.model, "logger", None)
                entropy_loss = getattr(logged, "name_to_value", {}).get("train/entropy_loss") if logged else None
                recorder.rollout_end(self.num_timesteps, None if entropy_loss is None else -float(entropy_loss))

            def _on_rollout_start(self) -> None:  # the previous rollout's update has just finished
                recorder.update_end()

            def _on_training_end(self) -> None:
                recorder.update_end()

        return _Callback()


def true_return_callback(*, window: int = 100, stop_at_proxy: float | None = None,
                         monitor: Monitor | Sequence[str] | bool | None = None, gold_every: int | None = 1,
                         stop_on_alarm: bool = False) -> BaseCallback:
    """A `TrueReturnRecorder`'s callback, for when one object is handier: the recorder's fields
    (`proxy_returns`, `true_returns`, `history`, `recent()`, `alarms`, ...) can be read off it directly."""
    return TrueReturnRecorder(window=window, stop_at_proxy=stop_at_proxy, monitor=monitor, gold_every=gold_every,
                              stop_on_alarm=stop_on_alarm).callback()
