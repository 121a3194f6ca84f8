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
from typing import TYPE_CHECKING, Any

import numpy as np

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
    """

    def __init__(self, *, window: int = 100, stop_at_proxy: float | None = None) -> None:
        self.window = window
        self.stop_at_proxy = stop_at_proxy
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
        return self.stop_at_proxy is not None and bool(self.history) and self.history[-1][2] >= self.stop_at_proxy

    def start(self, num_envs: int) -> None:
        self._episodes = EpisodeReturns(num_envs)
        self._start = time.perf_counter()

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

    def rollout_end(self, steps: int) -> None:
        self._pending = (steps, *self.recent())

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
                recorder.rollout_end(self.num_timesteps)

            def _on_rollout_start(self) -> None:  # the previous rollout's update has just finished
                recorder.update_end()

            def _on_training_end(self) -> None:
                recorder.update_end()

        return _Callback()


def true_return_callback(*, window: int = 100, stop_at_proxy: float | None = None) -> BaseCallback:
    """A `TrueReturnRecorder`'s callback, for when one object is handier: the recorder's fields
    (`proxy_returns`, `true_returns`, `history`, `recent()`, ...) can be read off it directly."""
    return TrueReturnRecorder(window=window, stop_at_proxy=stop_at_proxy).callback()
