"""Tabular learners on the gridworlds: Q-learning, current-reward-function Q-learning, approval and
decoupled-approval learners.

Each trains a batch of independent agents at once, one per copy of a batched environment (so three
seeds cost little more than one). States are boards, indexed as they are first seen; the Q table
is shared in shape but not in values across agents.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from goodhartlab.config import above, at_least, between, one_of
from goodhartlab.rl.batched import BatchedVectorEnv, make_batched
from goodhartlab.rl.rollout import FINISHED_EPISODES, FinishedEpisodes, RecordDualReturns

LearnFrom = Literal["proxy", "true", "current_rf"]


def _check_learning(config: QLearningConfig | ApprovalConfig) -> None:
    """The settings every tabular learner shares: a positive number of episodes, a step size and an exploration
    schedule that are probabilities."""
    at_least(config, "episodes", 1)
    above(config, "alpha", 0)
    between(config, "alpha", 0, 1)
    for name in ("epsilon_start", "epsilon_end"):
        between(config, name, 0, 1)
    above(config, "epsilon_decay_fraction", 0)
    between(config, "epsilon_decay_fraction", 0, 1)


def linear_epsilon(start: float, end: float, decay_fraction: float, episodes: int, episode: np.ndarray) -> np.ndarray:
    """Exploration rate per agent: linear from `start` to `end` over the first `decay_fraction` of episodes."""
    frac = np.minimum(episode / max(1.0, decay_fraction * episodes), 1.0)
    return start + frac * (end - start)


@dataclass
class QLearningConfig:
    """Defaults are those of the measurements in the research notes: alpha 0.2, gamma 0.95, epsilon
    linear from 1 to 0.05 over the first 60% of episodes."""

    episodes: int = 1500
    alpha: float = 0.2
    gamma: float = 0.95
    epsilon_start: float = 1.0
    epsilon_end: float = 0.05
    epsilon_decay_fraction: float = 0.6
    learn_from: LearnFrom = "proxy"
    """`proxy`: the visible reward (the standard agent). `true`: the hidden reward (an oracle).
    `current_rf`: each step's reward recomputed with the reward function's initial parameters (the
    environment's `initial_reward_parameters`, restored at every reset, so: as it stood when the
    episode began; Everitt et al.'s current-RF optimization), so changing the function earns nothing."""

    def __post_init__(self) -> None:
        _check_learning(self)
        between(self, "gamma", 0, 1)

    def epsilon(self, episode: np.ndarray) -> np.ndarray:
        return linear_epsilon(self.epsilon_start, self.epsilon_end, self.epsilon_decay_fraction, self.episodes,
                              episode)


@dataclass
class TabularResult:
    """Per agent (row) and episode (column): proxy and true returns, and any per-episode flags."""

    env_id: str
    config: dict[str, Any]
    seed: int
    proxy_returns: np.ndarray
    true_returns: np.ndarray
    flags: dict[str, np.ndarray] = field(default_factory=dict)
    states_seen: int = 0

    def tail(self, episodes: int = 200) -> dict[str, np.ndarray]:
        """Per-agent means over the last `episodes` episodes (training-tail metrics, with exploration)."""
        out = {"proxy": self.proxy_returns[:, -episodes:].mean(axis=1),
               "true": self.true_returns[:, -episodes:].mean(axis=1)}
        for name, values in self.flags.items():
            out[name] = values[:, -episodes:].mean(axis=1)
        return out


class EpisodeTable:
    """Per agent and episode, the first `episodes` of each agent: proxy and true returns and flags,
    filled in as episodes end. `done` counts every finished episode, those past the table too."""

    def __init__(self, num_agents: int, episodes: int) -> None:
        self.episodes = episodes
        self.done = np.zeros(num_agents, dtype=np.int64)
        self.proxy_returns = np.zeros((num_agents, episodes))
        self.true_returns = np.zeros((num_agents, episodes))
        self.flags: dict[str, np.ndarray] = {}

    def full(self) -> bool:
        return bool((self.done >= self.episodes).all())

    def add(self, ended: FinishedEpisodes, flags: Mapping[str, np.ndarray]) -> int:
        """Enter the episodes that ended on a step (`flags`: a value per ended episode); how many fit."""
        fits = self.done[ended.index] < self.episodes
        agents = ended.index[fits]
        episode = self.done[agents]
        self.proxy_returns[agents, episode] = ended.proxy_return[fits]
        self.true_returns[agents, episode] = ended.true_return[fits]
        for name, values in flags.items():
            self.flags.setdefault(name, np.zeros(self.proxy_returns.shape, dtype=bool))[agents, episode] = values[fits]
        self.done[ended.index] += 1
        return int(agents.size)

    def result(self, env_id: str, config: Any, seed: int, states_seen: int) -> TabularResult:
        return TabularResult(env_id, asdict(config), seed, self.proxy_returns, self.true_returns, self.flags,
                             states_seen)


class StateIndex:
    """Maps each distinct board to a row of the Q table, growing as new boards appear."""

    def __init__(self, num_agents: int, num_actions: int, initial: int = 1024) -> None:
        self.index: dict[bytes, int] = {}
        self.q = np.zeros((num_agents, initial, num_actions))

    def __call__(self, boards: np.ndarray) -> np.ndarray:
        ids = np.empty(len(boards), dtype=np.int64)
        for i, board in enumerate(boards):
            key = board.tobytes()
            found = self.index.get(key)
            if found is None:
                found = self.index[key] = len(self.index)
            ids[i] = found
        if len(self.index) > self.q.shape[1]:
            grown = np.zeros((self.q.shape[0], 2 * len(self.index), self.q.shape[2]))
            grown[:, : self.q.shape[1]] = self.q
            self.q = grown
        return ids


def _env(env_id: str, num_agents: int, env_kwargs: dict[str, Any] | None) -> BatchedVectorEnv:
    env = make_batched(env_id, num_agents, **(env_kwargs or {}))
    if not isinstance(env.single_action_space, gym.spaces.Discrete):
        raise ValueError(f"{env_id}: tabular Q-learning needs a Discrete action space, "
                         f"not {env.single_action_space}")
    return env


def _flag_names(info: dict[str, Any]) -> list[str]:
    return [k for k, v in info.items() if isinstance(v, np.ndarray) and v.dtype == bool and not k.startswith("_")]


def train_q_learning(env_id: str, config: QLearningConfig | None = None, *, seed: int = 0, num_agents: int = 3,
                     env_kwargs: dict[str, Any] | None = None,
                     reward_under: Callable[[dict[str, float], dict[str, Any]], float] | None = None,
                     progress: Callable[[int, TabularPolicy], None] | None = None) -> TabularResult:
    """Train `num_agents` independent epsilon-greedy Q-learners for `config.episodes` episodes each.

    Boolean step flags the environment reports (say `tampering`) become per-episode flags: true if
    the flag held on the episode's last step (the state the episode ended in). `progress` is told, as
    episodes finish, how many every agent has finished, with the policies as they stand then.
    """
    config = config or QLearningConfig()
    env = _env(env_id, num_agents, env_kwargs)
    envs = RecordDualReturns(env)
    rng = np.random.default_rng(seed)
    obs, _ = envs.reset(seed=seed)
    n_actions = int(env.single_action_space.n)  # type: ignore[attr-defined]
    table = StateIndex(num_agents, n_actions)
    initial: dict[str, float] = {}
    if config.learn_from == "current_rf":
        core = env.core
        reward_under = reward_under or getattr(type(core), "reward_under", None)
        initial = core.metadata.get("initial_reward_parameters", {})
        if reward_under is None or not initial:
            raise ValueError(f"{env_id} exposes no reward parameters, so current-RF learning is undefined; "
                             "pass reward_under= and give the environment `initial_reward_parameters`")
    episodes = EpisodeTable(num_agents, config.episodes)
    rows = np.arange(num_agents)
    state = table(obs)
    while not episodes.full():
        epsilon = config.epsilon(episodes.done)
        greedy = _argmax_random_ties(table.q[rows, state], rng)
        explore = rng.random(num_agents) < epsilon
        actions = np.where(explore, rng.integers(0, n_actions, num_agents), greedy)
        obs, proxy, terminated, truncated, info = envs.step(actions)
        true = info["true_reward"]
        if config.learn_from == "proxy":
            learn = proxy
        elif config.learn_from == "true":
            learn = true
        else:
            assert reward_under is not None
            learn = np.array([reward_under(initial, {k: v[i] for k, v in info.items() if isinstance(v, np.ndarray)})
                              for i in rows])
        done = terminated | truncated
        per_copy = done.reshape(-1, *(1,) * (obs.ndim - 1))
        next_obs = np.where(per_copy, info["final_obs"], obs) if done.any() else obs
        assert next_obs.shape == obs.shape, (next_obs.shape, obs.shape)
        next_state = table(next_obs)
        q = table.q
        bootstrap = np.where(terminated, 0.0, q[rows, next_state].max(axis=1))
        target = learn + config.gamma * bootstrap
        q[rows, state, actions] += config.alpha * (target - q[rows, state, actions])
        if done.any():
            ended: FinishedEpisodes = info[FINISHED_EPISODES]
            slowest = int(episodes.done.min())
            # Each flag's value on the step that ended the episode: read off this step's info, nothing to accumulate.
            entered = episodes.add(ended, {name: info[name][ended.index] for name in _flag_names(info)})
            if entered and progress is not None:
                progress(slowest, TabularPolicy(table, config.epsilon(episodes.done)))
            state = table(obs)
        else:
            state = next_state
    return episodes.result(env_id, config, seed, len(table.index))


@dataclass(frozen=True)
class TabularPolicy:
    """Epsilon-greedy policies as they stand: a view of the Q table (valid until the next training step) and each
    agent's exploration rate."""

    table: StateIndex
    epsilon: np.ndarray

    def probabilities(self, boards: np.ndarray, agent: int = 0) -> np.ndarray:
        """Action probabilities at each board, (boards, actions): epsilon spread uniformly, the rest on the greedy
        actions (ties shared); a board never seen is uniform."""
        actions = self.table.q.shape[2]
        probabilities = np.full((len(boards), actions), 1.0 / actions)
        for row, board in enumerate(boards):
            found = self.table.index.get(np.asarray(board).tobytes())
            if found is None:
                continue
            values = self.table.q[agent, found]
            best = values == values.max()
            probabilities[row] = self.epsilon[agent] / actions + (1 - self.epsilon[agent]) * best / best.sum()
        return probabilities


def _argmax_random_ties(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Argmax per row, breaking ties uniformly (a fresh table must not always pick action 0)."""
    noise = rng.random(values.shape) * 1e-9
    return np.argmax(values + noise * (values == values.max(axis=1, keepdims=True)), axis=1)


@dataclass
class ApprovalConfig:
    """Approval learners (Uesato et al. 2020): feedback already encodes long-term value, so there is no
    bootstrapping. `decoupled` queries an independent sample from the policy instead of the executed
    action."""

    episodes: int = 1000
    alpha: float = 0.2
    epsilon_start: float = 1.0
    epsilon_end: float = 0.02
    epsilon_decay_fraction: float = 0.6
    decoupled: bool = False
    method: Literal["q", "pg"] = "q"
    temperature: float = 1.0
    """Policy-gradient softmax temperature over the tabular logits."""

    def __post_init__(self) -> None:
        one_of(self, "method", ("q", "pg"))
        _check_learning(self)
        above(self, "temperature", 0)

    def epsilon(self, episode: np.ndarray) -> np.ndarray:
        return linear_epsilon(self.epsilon_start, self.epsilon_end, self.epsilon_decay_fraction, self.episodes,
                              episode)


def train_approval(env_id: str = "goodhartlab/RegisterTampering-v0", config: ApprovalConfig | None = None, *,
                   seed: int = 0, num_agents: int = 3, env_kwargs: dict[str, Any] | None = None) -> TabularResult:
    """Approval Q-learning / policy gradient, standard or decoupled, on an environment whose action is a
    pair (executed, queried) and whose proxy is the (possibly tampered) approval of the queried action.

    Q-learning: Q(s, a') += alpha (f(a') - Q(s, a')). Policy gradient (tabular softmax):
    theta(s) += alpha f(a') grad log pi(a'|s). Standard: a' = the executed action; decoupled: a' is
    drawn from the policy independently of the executed action.
    """
    config = config or ApprovalConfig()
    env = make_batched(env_id, num_agents, **(env_kwargs or {}))
    space = env.single_action_space
    if not isinstance(space, gym.spaces.MultiDiscrete) or space.shape != (2,):
        raise ValueError(f"{env_id}: approval learners need a (executed, queried) MultiDiscrete action")
    n_actions = int(space.nvec[0])
    rng = np.random.default_rng(seed)
    envs = RecordDualReturns(env, flags=("tampering",))  # tampered: on the register at any step of the episode
    obs, _ = envs.reset(seed=seed)
    table = StateIndex(num_agents, n_actions)
    rows = np.arange(num_agents)
    episodes = EpisodeTable(num_agents, config.episodes)
    state = table(obs)

    def sample(values: np.ndarray, epsilon: np.ndarray) -> np.ndarray:
        if config.method == "q":
            greedy = _argmax_random_ties(values, rng)
            return np.where(rng.random(num_agents) < epsilon, rng.integers(0, n_actions, num_agents), greedy)
        probs = _softmax(values / config.temperature)
        return (rng.random((num_agents, 1)) > np.cumsum(probs, axis=1)).sum(axis=1).clip(0, n_actions - 1)

    while not episodes.full():
        epsilon = config.epsilon(episodes.done)
        values = table.q[rows, state]
        executed = sample(values, epsilon)
        queried = sample(values, epsilon) if config.decoupled else executed
        obs, proxy, _, _, info = envs.step(np.stack([executed, queried], axis=1))
        if config.method == "q":
            table.q[rows, state, queried] += config.alpha * (proxy - table.q[rows, state, queried])
        else:
            probs = _softmax(values / config.temperature)
            grad = -probs
            grad[rows, queried] += 1.0
            table.q[rows, state] += config.alpha * proxy[:, None] * grad
        if FINISHED_EPISODES in info:
            ended: FinishedEpisodes = info[FINISHED_EPISODES]
            episodes.add(ended, {"tampered": ended.flags["tampering"]})
        state = table(obs)
    return episodes.result(env_id, config, seed, len(table.index))


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)
