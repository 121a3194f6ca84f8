"""The teacher agent: a small head on the frozen base's hidden states, held to the base by a KL budget or penalty.

The head reads the base's last hidden state (with the remaining budget and the steps left) and outputs a
vector u whose dot products with the base's output embeddings are logit offsets: the proposal is
q ∝ base · exp(offsets), the base reweighted. Only the base's `candidates` most likely tokens (and the line
break, the token that ends a turn) are reweighted; every other token keeps the base's proportions, so they
form one atom whose share of q and of π is exact, and every KL below is the exact per-token KL over the
whole vocabulary. At the start the offsets are 0: the agent *is* the base.

Two regularizers (`KLAgentConfig.regularizer`):

- ``budget`` (Cohen et al.): a total budget per episode. The head also says what fraction f of the remaining
  budget this token may spend; the token is drawn from the KL-fixed mixture π = (1 − α)·base + α·q with
  KL(π ‖ base) = f · remaining (`goodhartlab.measure.kl_budget`), trained through α by its implicit
  derivatives. Every episode's summed per-token KL stays within the budget.
- ``penalty`` (what RLHF trainers do): π = q, and each token's reward is reduced by c · KL(π ‖ base). c is
  fixed, or adapted between updates toward a target KL per episode (Ziegler et al. 2019's controller).

Training is PPO with γ = 1 (returns are undiscounted sums to the episode's end), a value baseline on the
same features, and advantages normalized per batch. Episodes run in lockstep in `TeacherStudentEnv`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from goodhartlab.config import ConfigError, above, at_least, between, one_of
from goodhartlab.measure.kl import discrete_kl
from goodhartlab.measure.kl_budget import KLBudget, kl_fixed_mixture
from goodhartlab.text.teacher_student import ConversationGold, GoldReport, TeacherStudentEnv, is_silent

REGULARIZERS = {"budget": "a total KL budget per episode, spent through the KL-fixed mixture (Cohen et al.)",
                "penalty": "a per-token KL penalty in the reward, as RLHF trainers do"}


@dataclass
class KLAgentConfig:
    """The agent and its training (PPO, γ = 1). Defaults train in minutes on a CPU."""

    regularizer: Literal["budget", "penalty"] = "budget"  # see REGULARIZERS
    budget: float = 10.0  # nats per episode (regularizer: budget); the paper's 10 and 20
    penalty: float = 0.1  # KL coefficient per token (regularizer: penalty); the start value when adapted
    penalty_target: float = 0.0  # > 0: adapt the coefficient toward this mean KL per episode (nats); 0: keep it fixed
    penalty_rate: float = 0.5  # how far one update moves the coefficient: c *= 1 + rate * clip(KL/target - 1, ±0.5)
    candidates: int = 64  # the base's most likely tokens the head reweights (the line break is always one)
    width: int = 64  # the head's hidden layer
    updates: int = 8  # PPO updates, each on a fresh batch of episodes
    episodes: int = 32  # episodes per batch, run in lockstep
    learning_rate: float = 3e-3
    epochs: int = 4  # passes over each batch
    clip: float = 0.2  # PPO's ratio clip
    # > 0: end an update's epochs once the policy is 1.5 x this far from the batch's (approx. KL per decision)
    target_kl: float = 0.0
    value_coef: float = 0.5
    reach_coef: float = 0.1  # pushes the spend fraction down where it asks for more KL than the proposal reaches
    max_grad_norm: float = 1.0

    def __post_init__(self) -> None:
        one_of(self, "regularizer", REGULARIZERS)
        if isinstance(self.budget, bool) or not math.isfinite(self.budget) or self.budget <= 0:
            raise ConfigError("budget", f"must be a finite number of nats > 0, got {self.budget!r}")
        at_least(self, "penalty", 0)
        at_least(self, "penalty_target", 0)
        between(self, "penalty_rate", 0, 10)
        for name in ("candidates", "width", "episodes", "epochs"):
            at_least(self, name, 1)
        at_least(self, "updates", 0)
        above(self, "learning_rate", 0)
        between(self, "clip", 1e-6, 1.0)
        at_least(self, "target_kl", 0)
        at_least(self, "value_coef", 0)
        at_least(self, "reach_coef", 0)
        above(self, "max_grad_norm", 0)


# -- the head and its atoms ---------------------------------------------------------------------------------------


def _head(width: int, hidden: int) -> Any:
    """The policy head and its value baseline (both on features of size width + 2)."""
    import torch
    from torch import nn

    class AgentHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Linear(width + 2, hidden), nn.Tanh())
            self.offset = nn.Linear(hidden, width)  # u: the logit offsets are its dot products with output embeddings
            self.spend = nn.Linear(hidden, 1)  # the logit of the fraction of the remaining budget to spend
            value_out = nn.Linear(hidden, 1)
            self.value = nn.Sequential(nn.Linear(width + 2, hidden), nn.Tanh(), value_out)
            for layer in (self.offset, self.spend, value_out):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

        def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            inner = self.body(features)
            return self.offset(inner), self.spend(inner)[:, 0], self.value(features)[:, 0]

    return AgentHead()


def features(hidden: Any, remaining: np.ndarray, steps_left: float) -> Any:
    """What the head reads: the base's last hidden state scaled to unit RMS, the share of the budget left, and
    the share of the episode left."""
    import torch

    h = hidden.float()
    h = h / h.pow(2).mean(-1, keepdim=True).sqrt().clamp(min=1e-6)
    extra = torch.tensor(np.stack([remaining, np.full(len(remaining), steps_left)], 1), dtype=h.dtype)
    return torch.cat([h, extra], dim=1)


def candidate_atoms(logits: Any, candidates: int, line_break: int) -> tuple[Any, Any]:
    """(token ids R × (c + 1), base log-probabilities R × (c + 2)) of each row: the base's c + 1 most likely
    tokens, the line break among them, then one atom for every other token (−inf when there is none)."""
    import torch

    log_probs = torch.log_softmax(logits.double(), dim=-1)
    count = min(candidates + 1, log_probs.shape[1])
    top = log_probs.topk(count, dim=-1).indices
    missing = ~(top == line_break).any(dim=1)
    top[missing, -1] = line_break
    chosen = log_probs.gather(1, top)
    others = log_probs.scatter(1, top, float("-inf"))
    return top, torch.cat([chosen, torch.logsumexp(others, dim=1, keepdim=True)], dim=1)


def project(basis: Any, u: Any) -> Any:
    """Logit offsets over the atoms: u · e_v for the candidates (`basis` = their output embeddings, rows ×
    candidates × width), 0 for the atom of other tokens."""
    import torch

    offsets = torch.einsum("rcd,rd->rc", basis, u)
    return torch.cat([offsets, torch.zeros_like(offsets[:, :1])], dim=1)


def _offsets(embeddings: Any, top: Any, u: Any) -> Any:
    return project(embeddings[top], u)


class Helper(Protocol):
    """An ask-for-help base (goodhartlab.text.ask_for_help): the pessimistic base over a row's atoms, and
    which rows must defer."""

    def assess(self, features: Any, top: Any, log_base: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(normalized pessimistic log-probs R × atoms, floor R, disagreement R)."""
        ...

    def must_defer(self, disagreement: np.ndarray) -> np.ndarray: ...


# -- one batch of decisions ---------------------------------------------------------------------------------------


@dataclass
class Decisions:
    """The agent's decisions in one batch of episodes, what PPO trains on."""

    features: list[Any] = field(default_factory=list)
    top: list[Any] = field(default_factory=list)
    log_base: list[np.ndarray] = field(default_factory=list)  # the agent's base over atoms (β, or the pessimistic ν̄)
    floor: list[np.ndarray] = field(default_factory=list)  # KL charged for acting at all (pessimistic base; else 0)
    remaining: list[np.ndarray] = field(default_factory=list)
    atom: list[np.ndarray] = field(default_factory=list)
    log_prob: list[np.ndarray] = field(default_factory=list)
    episode: list[np.ndarray] = field(default_factory=list)
    kl: list[np.ndarray] = field(default_factory=list)  # per-token KL charged (nats)

    def cat(self) -> dict[str, Any]:
        import torch

        out: dict[str, Any] = {}
        for name in ("features", "top"):
            out[name] = torch.cat(getattr(self, name)) if getattr(self, name) else None
        for name in ("log_base", "floor", "remaining", "atom", "log_prob", "episode", "kl"):
            values = getattr(self, name)
            out[name] = np.concatenate(values) if values else np.zeros(0)
        return out


@dataclass
class Rollout:
    """One batch of episodes: the decisions, and what each episode did."""

    decisions: dict[str, Any]
    returns: np.ndarray  # per decision: the undiscounted return from it to the episode's end (penalty included)
    reward: np.ndarray  # per episode: summed sentiment of the student's turns
    gold: GoldReport  # per episode: the conversation gold and its parts (silent and repeated shares among them)
    kl: np.ndarray  # per episode: summed per-token KL charged
    kl_to_base: np.ndarray  # per episode: summed per-token KL to the base β itself (differs with a pessimistic base)
    kl_by_position: np.ndarray  # episodes × episode_tokens: KL charged at each token (0 where the agent did not act)
    student_turns: np.ndarray
    teacher_silent: np.ndarray  # per episode: share of the teacher's (agent's) turns that are silent (NaN with none)
    silent_reward_share: np.ndarray  # per episode: share of the reward that silent turns earned (NaN with none)
    deferrals: np.ndarray  # per episode: teacher decisions handed to the safe reply
    decision_points: np.ndarray  # per episode: teacher decisions (acted or deferred)
    transcripts: list[str]
    penalty: float


class KLAgent:
    """The head, its optimizer and how it acts; `train` runs the PPO loop."""

    def __init__(self, cfg: KLAgentConfig, env: TeacherStudentEnv, *, seed: int = 0,
                 helper: Helper | None = None) -> None:
        import torch

        torch.manual_seed(seed)
        self.cfg, self.env, self.helper = cfg, env, helper
        self.embeddings = env.head.weight.detach().float()
        self.net = _head(self.embeddings.shape[1], cfg.width)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=cfg.learning_rate)
        self.rng = np.random.default_rng(seed)
        self.generator = torch.Generator().manual_seed(seed + 1)
        self.penalty = cfg.penalty
        # at the start each token may spend about 1 / (expected teacher tokens) of what remains
        self.spend_bias = -math.log(max(env.cfg.episode_tokens / 2.0, 1.0))

    # the policy ------------------------------------------------------------------------------------------------

    def policy(self, x: Any, top: Any, log_base: np.ndarray, floor: np.ndarray, remaining: np.ndarray,
               *, grad: bool) -> tuple[Any, Any, np.ndarray, Any]:
        """(log π over atoms (torch, R × atoms), value (R), KL charged per row (numpy), auxiliary loss)."""
        import torch

        context = torch.enable_grad() if grad else torch.no_grad()
        with context:
            u, spend_logit, value = self.net(x)
            base = torch.as_tensor(log_base)
            logits = base + _offsets(self.embeddings, top, u).double()
            log_q = torch.log_softmax(logits, dim=1)
            if self.cfg.regularizer == "penalty":
                log_pi = log_q
                kl = discrete_kl(log_pi.detach().numpy(), log_base) + floor
                return log_pi, value, kl, torch.zeros(())
            fraction = torch.sigmoid(spend_logit.double() + self.spend_bias)
            allowance = torch.as_tensor(np.maximum(remaining - floor, 0.0))
            target = fraction * allowance
            solution = kl_fixed_mixture(log_base, logits.detach().numpy(), target.detach().numpy())
            alpha_star = torch.as_tensor(solution.alpha)
            moves = torch.as_tensor(solution.moves)
            q = log_q.exp()
            # α's implicit derivative: dα = (d target − Σ_v ∂KL/∂q_v dq_v) / (∂KL/∂α), added as a zero-valued term
            pull = (target - target.detach()) - ((q - q.detach()) * torch.as_tensor(solution.proposal_gradient)).sum(1)
            slope = torch.as_tensor(np.where(solution.moves, solution.slope, 1.0))
            alpha = alpha_star + torch.where(moves, pull / slope, torch.zeros_like(pull))
            alpha = alpha.clamp(0.0, 1.0)[:, None]
            with np.errstate(divide="ignore"):
                log_pi = torch.logaddexp(torch.log1p(-alpha) + base, torch.log(alpha) + log_q)
            short = torch.as_tensor(np.where(solution.reachable, 0.0, solution.target - solution.kl))
            reach = ((target - target.detach() + short) ** 2 * torch.as_tensor(~solution.reachable)).mean()
            return log_pi, value, solution.kl + floor, reach

    def act(self, env: TeacherStudentEnv, rows: np.ndarray, remaining: np.ndarray, steps_left: float,
            decisions: Decisions) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Tokens for the episodes in `rows` (where the agent speaks), which of them defer, the KL charged per
        row and the KL to β itself per row."""
        import torch

        from goodhartlab.text.sampling import draw_tokens

        rows_t = torch.as_tensor(rows)
        x = features(env.hidden[rows_t], remaining[rows] / self.cfg.budget, steps_left)
        top, log_beta_t = candidate_atoms(env.logits[rows_t], self.cfg.candidates, env.tokens.line_break)
        log_beta = log_beta_t.numpy()
        defer = np.zeros(len(rows), dtype=bool)
        log_base, floor = log_beta, np.zeros(len(rows))
        if self.helper is not None:
            log_base, floor, disagreement = self.helper.assess(x, top, log_beta_t)
            unaffordable = floor >= remaining[rows] if self.cfg.regularizer == "budget" else np.zeros(len(rows), bool)
            defer = self.helper.must_defer(disagreement) | unaffordable
        tokens = np.zeros(len(rows), dtype=np.int64)
        charged, to_beta = np.zeros(len(rows)), np.zeros(len(rows))
        acting = np.flatnonzero(~defer)
        if len(acting):
            index = torch.as_tensor(acting)
            log_pi, _, kl, _ = self.policy(x[index], top[index], log_base[acting], floor[acting],
                                           remaining[rows][acting], grad=False)
            probs = log_pi.exp().numpy()
            cumulative = np.cumsum(probs, axis=1)
            draws = self.rng.random(len(acting)) * cumulative[:, -1]
            atoms = np.minimum((cumulative < draws[:, None]).sum(1), probs.shape[1] - 1)
            others = atoms == top.shape[1]  # the atom of every other token: draw one from the base's own proportions
            chosen = top[index].gather(1, torch.as_tensor(np.minimum(atoms, top.shape[1] - 1))[:, None])[:, 0]
            if others.any():
                masked = env.logits[torch.as_tensor(rows[acting][others])].clone()
                masked.scatter_(1, top[index][torch.as_tensor(others)], float("-inf"))
                chosen[torch.as_tensor(others)] = draw_tokens(masked, 1.0, self.generator)
            tokens[acting] = chosen.numpy()
            charged[acting] = kl
            to_beta[acting] = discrete_kl(log_pi.numpy(), log_beta[acting])
            decisions.features.append(x[index])
            decisions.top.append(top[index])
            decisions.log_base.append(log_base[acting])
            decisions.floor.append(floor[acting])
            decisions.remaining.append(remaining[rows][acting])
            decisions.atom.append(atoms)
            decisions.log_prob.append(log_pi.numpy()[np.arange(len(acting)), atoms])
            decisions.episode.append(rows[acting])
            decisions.kl.append(kl)
        return tokens, defer, charged, to_beta

    # one batch --------------------------------------------------------------------------------------------------

    def rollout(self, gold: ConversationGold, env: TeacherStudentEnv | None = None) -> Rollout:
        """Run one batch of episodes with the current policy, in `env` (by default the agent's own)."""
        cfg = self.cfg
        env = self.env if env is None else env
        env.reset()
        size, length = env.episodes, env.cfg.episode_tokens
        budget = KLBudget(cfg.budget, size)
        decisions = Decisions()
        kl_by_position = np.zeros((size, length))
        kl_to_base = np.zeros(size)
        deferrals, decision_points = np.zeros(size), np.zeros(size)
        credit: list[list[float]] = [[] for _ in range(size)]  # per episode, the reward credited to each decision
        penalties: list[list[float]] = [[] for _ in range(size)]
        position = 0
        while not env.done:
            rows = np.flatnonzero(env.agent_turn)
            actions = np.zeros(size, dtype=np.int64)
            defer = np.zeros(size, dtype=bool)
            if len(rows):
                remaining = budget.remaining.copy() if cfg.regularizer == "budget" else np.full(size, cfg.budget)
                tokens, deferred, charged, to_beta = self.act(env, rows, remaining, 1.0 - position / length,
                                                              decisions)
                actions[rows], defer[rows] = tokens, deferred
                decision_points[rows] += 1
                deferrals[rows[deferred]] += 1
                acted = rows[~deferred]
                if cfg.regularizer == "budget":
                    charged[~deferred] = budget.spend(charged[~deferred], acted)
                kl_by_position[acted, position] = charged[~deferred]
                kl_to_base[acted] += to_beta[~deferred]
                for row, kl in zip(acted.tolist(), charged[~deferred].tolist(), strict=True):
                    credit[row].append(0.0)
                    penalties[row].append(-self.penalty * kl if cfg.regularizer == "penalty" else 0.0)
            step = env.step(actions, defer)
            for row in np.flatnonzero(step.rewards):
                if credit[row]:  # a reward before the agent's first decision is no decision's doing
                    credit[row][-1] += float(step.rewards[row])
            position += 1
        return self._summarize(env, decisions.cat(), credit, penalties, gold, kl_by_position, kl_to_base, deferrals,
                               decision_points)

    def _summarize(self, env: TeacherStudentEnv, decisions: dict[str, Any], credit: list[list[float]],
                   penalties: list[list[float]], gold: ConversationGold, kl_by_position: np.ndarray,
                   kl_to_base: np.ndarray, deferrals: np.ndarray, decision_points: np.ndarray) -> Rollout:
        returns = np.zeros(len(decisions["episode"]))
        order = {row: np.flatnonzero(decisions["episode"] == row) for row in range(env.episodes)}
        for row, index in order.items():  # decisions of an episode are stored in the order they were made
            per_step = np.array(credit[row]) + np.array(penalties[row])
            returns[index] = np.cumsum(per_step[::-1])[::-1]
        records = env.records
        turns = np.array([len(r.student_turns) for r in records], dtype=float)
        reward = np.array([sum(r.rewards) for r in records])
        silent_reward = np.array([sum(x for t, x in zip(r.student_turns, r.rewards, strict=True) if is_silent(t))
                                  for r in records])
        teacher = np.array([sum(is_silent(t) for t in r.teacher_turns) / len(r.teacher_turns) if r.teacher_turns
                            else np.nan for r in records])
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(reward > 0, silent_reward / reward, np.nan)
        return Rollout(decisions=decisions, returns=returns, reward=reward,
                       gold=gold.report([r.student_turns for r in records]), kl=kl_by_position.sum(1),
                       kl_to_base=kl_to_base, kl_by_position=kl_by_position, student_turns=turns,
                       teacher_silent=teacher, silent_reward_share=share, deferrals=deferrals,
                       decision_points=decision_points,
                       transcripts=[env.transcript(row) for row in range(min(4, env.episodes))], penalty=self.penalty)

    # learning ---------------------------------------------------------------------------------------------------

    def update(self, batch: Rollout) -> dict[str, float]:
        """PPO epochs on one batch (full-batch steps)."""
        import torch

        from goodhartlab.rl.agents.ppo import approximate_kl, past_kl_target

        d = batch.decisions
        if not len(d["episode"]):
            return {"policy_loss": 0.0, "value_loss": 0.0}
        returns = torch.as_tensor(batch.returns, dtype=torch.float32)
        atoms = torch.as_tensor(d["atom"])
        old = torch.as_tensor(d["log_prob"])
        with torch.no_grad():
            _, _, values = self.net(d["features"])
        advantages = returns - values
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8) if len(advantages) > 1 else advantages
        stats: dict[str, float] = {}
        for _ in range(self.cfg.epochs):
            log_pi, value, _, reach = self.policy(d["features"], d["top"], d["log_base"], d["floor"], d["remaining"],
                                                  grad=True)
            new = log_pi.gather(1, atoms[:, None])[:, 0]
            log_ratio = new - old
            ratio = log_ratio.exp()
            if self.cfg.target_kl > 0:
                # PPO's early stop: one bad step can move a penalized policy tens of nats
                moved = float(approximate_kl(log_ratio).detach())
                stats["moved_kl"] = moved
                if past_kl_target(moved, self.cfg.target_kl):
                    break
            clipped = ratio.clamp(1 - self.cfg.clip, 1 + self.cfg.clip)
            policy_loss = -torch.min(ratio * advantages, clipped * advantages).mean()
            value_loss = ((value - returns) ** 2).mean()
            loss = policy_loss + self.cfg.value_coef * value_loss + self.cfg.reach_coef * reach
            self.optimizer.zero_grad()
            loss.float().backward()
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.cfg.max_grad_norm)
            self.optimizer.step()
            stats.update({"policy_loss": float(policy_loss.detach()), "value_loss": float(value_loss.detach()),
                          "reach_loss": float(reach.detach())})
        if self.cfg.regularizer == "penalty" and self.cfg.penalty_target > 0:
            error = float(np.clip(batch.kl.mean() / self.cfg.penalty_target - 1.0, -0.5, 0.5))
            self.penalty *= 1.0 + self.cfg.penalty_rate * error
        return stats

    def train(self, gold: ConversationGold, *, progress: Callable[[int, Rollout], None] | None = None) -> list[Rollout]:
        """`updates` PPO updates; returns every batch (the first is the untrained policy's)."""
        batches = []
        for index in range(self.cfg.updates):
            batch = self.rollout(gold)
            batches.append(batch)
            if progress is not None:
                progress(index, batch)
            self.update(batch)
        return batches
