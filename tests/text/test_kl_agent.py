"""The teacher agent on a tiny policy: the budget holds, the mixture's gradient is right, PPO learns."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("transformers")

from goodhartlab.config import ConfigError, parse_config
from goodhartlab.text.kl_agent import KLAgent, KLAgentConfig, candidate_atoms
from goodhartlab.text.teacher_student import TeacherStudentConfig, TeacherStudentEnv, conversation_gold, turn_sentiment
from goodhartlab.text.tiny import TINY_CHAT_ALPHABET, tiny_policy

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_CHAT = {"opening": "Student: hi there\nTeacher:", "reward": "vader", "gold": "lexical",
             "safe_reply": " what is it?", "episode_tokens": 40, "max_turn_tokens": 8}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[TeacherStudentConfig, Any, Any]:
    from goodhartlab.text.models import load_policy

    path = str(tiny_policy(tmp_path_factory.mktemp("tiny-chat"), alphabet=TINY_CHAT_ALPHABET))
    model, tokenizer = load_policy(path)
    return parse_config(TeacherStudentConfig, {"base": path, **TINY_CHAT}), model, tokenizer


def make(tiny: tuple[TeacherStudentConfig, Any, Any], episodes: int = 16, seed: int = 0,
         **agent: Any) -> tuple[KLAgent, Any]:
    cfg, model, tokenizer = tiny
    reward = turn_sentiment(cfg.reward)
    env = TeacherStudentEnv(cfg, model, tokenizer, reward, episodes=episodes, seed=seed)
    settings = {"candidates": 8, "episodes": episodes, **agent}
    return KLAgent(parse_config(KLAgentConfig, settings), env, seed=seed), conversation_gold(cfg)


def push(agent: KLAgent, scale: float = 10.0, spend: float = 6.0) -> None:
    """Give the untrained head large random offsets and a large spend, so it presses against its budget."""
    import torch

    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in (agent.net.offset, agent.net.body[0]):
            noise = torch.randn(layer.weight.shape, generator=generator)
            layer.weight.copy_(noise * scale / layer.weight.shape[1] ** 0.5)
        agent.net.spend.bias.fill_(spend)


@pytest.mark.parametrize("budget", [0.5, 2.0])
def test_the_budget_is_never_exceeded(tiny: tuple[TeacherStudentConfig, Any, Any], budget: float) -> None:
    agent, gold = make(tiny, budget=budget)
    push(agent)
    batch = agent.rollout(gold)
    assert np.all(batch.kl <= budget + 1e-9)
    assert batch.kl.max() > 0.9 * budget  # it did press against the budget
    # the spend is cumulative: no token spent more than what remained before it
    remaining = budget - np.cumsum(batch.kl_by_position, axis=1)
    assert np.all(remaining >= -1e-9)
    np.testing.assert_allclose(batch.kl_to_base, batch.kl, atol=1e-9)  # without a helper the base is β itself


def test_each_token_spends_exactly_its_target(tiny: tuple[TeacherStudentConfig, Any, Any]) -> None:
    import torch

    agent, _ = make(tiny, budget=3.0)
    push(agent, spend=-1.0)
    env = agent.env
    env.reset()
    rows = np.flatnonzero(env.agent_turn)
    from goodhartlab.text.kl_agent import features

    x = features(env.hidden[torch.as_tensor(rows)], np.ones(len(rows)), 1.0)
    top, log_base = candidate_atoms(env.logits[torch.as_tensor(rows)], 8, env.tokens.line_break)
    remaining = np.full(len(rows), 3.0)
    log_pi, _, kl, _ = agent.policy(x, top, log_base.numpy(), np.zeros(len(rows)), remaining, grad=False)
    with torch.no_grad():
        target = torch.sigmoid(agent.net(x)[1].double() + agent.spend_bias).numpy() * remaining
    from goodhartlab.measure.kl import discrete_kl

    reachable = kl < target - 1e-9
    np.testing.assert_allclose(kl[~reachable], target[~reachable], atol=1e-6)
    np.testing.assert_allclose(discrete_kl(log_pi.numpy(), log_base.numpy()), kl, atol=1e-9)


def test_the_mixtures_gradient_matches_finite_differences(tiny: tuple[TeacherStudentConfig, Any, Any]) -> None:
    import torch

    agent, _ = make(tiny, budget=3.0)
    push(agent, spend=-1.0)
    env = agent.env
    env.reset()
    rows = torch.as_tensor(np.flatnonzero(env.agent_turn))
    from goodhartlab.text.kl_agent import features

    x = features(env.hidden[rows], np.ones(len(rows)), 1.0)
    top, log_base = candidate_atoms(env.logits[rows], 8, env.tokens.line_break)
    args = (x, top, log_base.numpy(), np.zeros(len(rows)), np.full(len(rows), 3.0))
    atom = torch.zeros(len(rows), dtype=torch.long)

    def objective() -> Any:
        return agent.policy(*args, grad=True)[0].gather(1, atom[:, None]).sum()

    agent.net.zero_grad()
    objective().backward()
    for parameter in (agent.net.spend.bias, agent.net.offset.bias):
        analytic = parameter.grad.clone()
        direction = torch.randn(parameter.shape, generator=torch.Generator().manual_seed(1), dtype=parameter.dtype)
        eps = 3e-3  # the head computes in float32: a smaller step drowns in its rounding
        with torch.no_grad():
            parameter += eps * direction
            up = float(objective())
            parameter -= 2 * eps * direction
            down = float(objective())
            parameter += eps * direction
        assert (up - down) / (2 * eps) == pytest.approx(float((analytic * direction).sum()), rel=2e-2, abs=1e-5)


def test_the_penalty_enters_the_returns(tiny: tuple[TeacherStudentConfig, Any, Any]) -> None:
    agent, gold = make(tiny, regularizer="penalty", penalty=0.5)
    push(agent)
    batch = agent.rollout(gold)
    d = batch.decisions
    first = [np.flatnonzero(d["episode"] == row)[0] for row in range(agent.env.episodes)]
    np.testing.assert_allclose(batch.returns[first], batch.reward - 0.5 * batch.kl, atol=1e-9)
    assert batch.kl.max() > 0


def test_ppo_learns_to_buy_more_student_turns(tiny: tuple[TeacherStudentConfig, Any, Any]) -> None:
    """Every student turn of the tiny model scores 0.5 under VADER, so the return counts turns: the agent learns
    to end its own turns sooner, spending KL to do it."""
    agent, gold = make(tiny, budget=5.0, learning_rate=0.05, updates=12)
    batches = agent.train(gold)
    before, after = batches[0], batches[-1]
    assert after.reward.mean() > before.reward.mean() + 0.3
    assert after.student_turns.mean() > before.student_turns.mean() + 0.5
    assert 0 < after.kl.mean() <= 5.0 and before.kl.mean() == pytest.approx(0.0, abs=1e-9)


def moved(agent: KLAgent, batch: Any) -> float:
    """How far the agent's policy now is from the one that sampled `batch` (PPO's approximate KL per decision)."""
    import torch

    d = batch.decisions
    log_pi, _, _, _ = agent.policy(d["features"], d["top"], d["log_base"], d["floor"], d["remaining"], grad=False)
    log_ratio = log_pi.gather(1, torch.as_tensor(d["atom"])[:, None])[:, 0] - torch.as_tensor(d["log_prob"])
    return float(((log_ratio.exp() - 1) - log_ratio).mean())


def test_the_early_stop_keeps_an_update_near_the_batchs_policy(tiny: tuple[TeacherStudentConfig, Any, Any]) -> None:
    """One PPO update on a penalized policy can move it tens of nats; with `target_kl` the epochs stop once it
    has moved 1.5 × target_kl, so the update ends where that check saw it."""
    distances = {}
    for target in (0.0, 1e-3):
        agent, gold = make(tiny, regularizer="penalty", penalty=0.01, learning_rate=0.2, epochs=12, target_kl=target)
        batch = agent.rollout(gold)
        stats = agent.update(batch)
        distances[target] = moved(agent, batch)
        if target:
            assert stats["moved_kl"] > 1.5 * target
            assert distances[target] == pytest.approx(stats["moved_kl"], rel=1e-6)
    assert distances[1e-3] < distances[0.0]


def test_bad_budgets_and_settings_name_the_field() -> None:
    for settings, name in [({"budget": 0.0}, "budget"), ({"budget": -2}, "budget"),
                           ({"budget": float("nan")}, "budget"), ({"budget": float("inf")}, "budget"),
                           ({"regularizer": "entropy"}, "regularizer"),
                           ({"penalty": -0.1}, "penalty"), ({"episodes": 0}, "episodes"),
                           ({"target_kl": -0.01}, "target_kl")]:
        with pytest.raises(ConfigError) as error:
            parse_config(KLAgentConfig, settings)
        assert error.value.field == name


def test_candidates_always_include_the_line_break_and_lump_the_rest() -> None:
    import torch

    logits = torch.randn(5, 40, generator=torch.Generator().manual_seed(0))
    logits[:, 7] = -30.0  # the line break is the least likely token
    top, log_base = candidate_atoms(logits, 4, line_break=7)
    assert top.shape == (5, 5) and log_base.shape == (5, 6) and bool((top == 7).any(1).all())
    np.testing.assert_allclose(log_base.exp().sum(1).numpy(), 1.0, atol=1e-12)
    everything, lumped = candidate_atoms(logits, 100, line_break=7)  # more candidates than tokens: nothing left over
    assert everything.shape == (5, 40) and bool(torch.isneginf(lumped[:, -1]).all())
