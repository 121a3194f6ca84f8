"""The pessimistic ask-for-help base: an ensemble of imitators of the base, and deferring where they disagree.

Cohen et al. (arXiv 2410.06213, §5) propose holding the agent to a *pessimistic* imitator: each action is
only as likely as the least willing of the imitator's plausible models makes it, and where those models
disagree the imitator asks the demonstrator for help instead of guessing. The paper calls it intractable
and leaves it untested; this is a small, testable version.

Imitators. Each member is the frozen base plus a learned correction of its logits (the same low-rank form
as the agent's head: dot products of a vector with the output embeddings, over the same atoms), trained by
maximum likelihood on the base's own teacher tokens from a bootstrap resample of base episodes. The
disagreement comes from randomized prior functions (Osband et al. 2018): each member adds a fixed random
correction of its own, scaled to `prior_scale` nats RMS on the data, that its training must cancel where
the data are. On the data the members agree (they all imitate the base there); away from it each member's
prior shows through, so they disagree exactly where the demonstrations say nothing, as a Bayesian
imitator's posterior does. Bootstrapping alone, from a shared start, would leave the members nearly equal
off the data.

Deferring. Where the members' disagreement (1 − Σ_v min_i m_i(v), the mass the pessimistic imitator holds
back) exceeds a threshold, or acting would cost more than the remaining budget, the agent must defer: the
teacher's turn becomes the designated safe reply (`TeacherStudentConfig.safe_reply`), our stand-in for the
human teacher the imitators imitate. The threshold is the `defer_quantile` of the disagreement on held-out
base episodes, so the base itself defers on a known share of its own decisions. Elsewhere the agent's KL
is charged against ν (`goodhartlab.measure.kl_budget.pessimistic_base`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from goodhartlab.config import above, at_least, between
from goodhartlab.measure.kl_budget import pessimistic_base
from goodhartlab.text.kl_agent import _offsets, project


@dataclass
class AskForHelpConfig:
    """The imitator ensemble and when the agent must defer."""

    members: int = 4
    prior_scale: float = 1.0  # RMS logit offset (nats) of each member's random prior on the base's own tokens
    width: int = 32  # hidden layer of each member's correction
    data_episodes: int = 96  # base episodes sampled to learn from; a third are held out to set the threshold
    train_steps: int = 200
    learning_rate: float = 1e-2
    defer_quantile: float = 0.95  # the base itself defers on about 1 − this share of its held-out decisions

    def __post_init__(self) -> None:
        at_least(self, "members", 2, why="disagreement needs two imitators")
        above(self, "prior_scale", 0)
        at_least(self, "width", 1)
        at_least(self, "data_episodes", 3, why="a third of them are held out to set the threshold")
        at_least(self, "train_steps", 1)
        above(self, "learning_rate", 0)
        between(self, "defer_quantile", 0.0, 1.0)


def _mlp(inputs: int, hidden: int, outputs: int) -> Any:
    from torch import nn

    return nn.Sequential(nn.Linear(inputs, hidden), nn.Tanh(), nn.Linear(hidden, outputs))


class ImitatorEnsemble:
    """`members` imitators of the base (see the module's docstring); a `Helper` for `KLAgent`."""

    def __init__(self, cfg: AskForHelpConfig, embeddings: Any, *, seed: int = 0) -> None:
        import torch

        torch.manual_seed(seed)
        self.cfg, self.embeddings = cfg, embeddings
        width = embeddings.shape[1]
        self.trained = [_mlp(width, cfg.width, width) for _ in range(cfg.members)]
        for net in self.trained:
            torch.nn.init.zeros_(net[-1].weight)
            torch.nn.init.zeros_(net[-1].bias)
        self.priors = [_mlp(width, cfg.width, width).requires_grad_(False) for _ in range(cfg.members)]
        self.prior_weight = torch.ones(cfg.members)
        self.threshold = float("inf")
        self.fit_report: dict[str, Any] = {}

    def member_log_probs(self, x: Any, top: Any, log_base: Any) -> Any:
        """Each member's log-probabilities over the atoms (members × rows × atoms)."""
        import torch

        hidden = x[:, :self.embeddings.shape[1]]
        out = []
        for net, prior, weight in zip(self.trained, self.priors, self.prior_weight, strict=True):
            correction = net(hidden) + weight * prior(hidden)
            out.append(torch.log_softmax(log_base + _offsets(self.embeddings, top, correction).double(), dim=1))
        return torch.stack(out)

    def fit(self, data: dict[str, Any], episodes: np.ndarray, held_out: np.ndarray, *, seed: int = 0) -> None:
        """Train each member on a bootstrap resample of the episodes in `episodes` (decisions of the base, as
        `KLAgent.rollout` stores them), then set the threshold on the decisions of `held_out` episodes."""
        import torch

        rng = np.random.default_rng(seed)
        x, top = data["features"], data["top"]
        log_base = torch.as_tensor(data["log_base"])
        atoms = torch.as_tensor(data["atom"])
        train = np.isin(data["episode"], episodes)
        rows = torch.as_tensor(np.flatnonzero(train))
        hidden = x[rows, :self.embeddings.shape[1]]
        basis = self.embeddings[top[rows]]  # gathered once: the candidates' embeddings do not change in training
        with torch.no_grad():  # scale each prior to prior_scale nats RMS over the candidates on the data
            for i, prior in enumerate(self.priors):
                offsets = project(basis, prior(hidden))
                self.prior_weight[i] = self.cfg.prior_scale / offsets[:, :-1].pow(2).mean().sqrt().clamp(min=1e-8)
        losses = []
        for i, net in enumerate(self.trained):
            resample = rng.choice(episodes, size=len(episodes), replace=True)
            counts = np.bincount(resample, minlength=int(data["episode"].max()) + 1)
            weights = torch.as_tensor(counts[data["episode"][train]], dtype=torch.float64)
            optimizer = torch.optim.Adam(net.parameters(), lr=self.cfg.learning_rate)
            with torch.no_grad():
                prior_part = self.prior_weight[i] * self.priors[i](hidden)
            for _ in range(self.cfg.train_steps):
                log_probs = torch.log_softmax(log_base[rows] + project(basis, net(hidden) + prior_part).double(), dim=1)
                loss = -(log_probs.gather(1, atoms[rows][:, None])[:, 0] * weights).sum() / weights.sum()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            losses.append(float(loss.detach()))
        with torch.no_grad():
            members = self.member_log_probs(x, top, log_base).numpy()
        disagreement = pessimistic_base(members).disagreement
        calibrate = np.isin(data["episode"], held_out)
        self.threshold = float(np.quantile(disagreement[calibrate], self.cfg.defer_quantile))
        base_nll = float(-(log_base.gather(1, atoms[:, None])[:, 0].numpy()[train]).mean())
        self.fit_report = {"members": self.cfg.members, "threshold": self.threshold,
                           "train_decisions": int(train.sum()), "held_out_decisions": int(calibrate.sum()),
                           "member_nll": losses, "base_nll": base_nll,
                           "disagreement_train_mean": float(disagreement[train].mean()),
                           "disagreement_held_out_mean": float(disagreement[calibrate].mean())}

    def assess(self, features: Any, top: Any, log_base: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import torch

        with torch.no_grad():
            pessimistic = pessimistic_base(self.member_log_probs(features, top, log_base).numpy())
        return pessimistic.log_normalized, pessimistic.floor, pessimistic.disagreement

    def must_defer(self, disagreement: np.ndarray) -> np.ndarray:
        return np.asarray(disagreement) > self.threshold
