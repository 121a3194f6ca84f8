"""Reward transforms: a scorer in, a scorer out, so each is also a TRL reward function.

Shaping changes what an optimizer can gain by pushing a reward model into its errors. Every transform
here wraps a `Scorer` and is one (name, version, `score`), so it drops into a best-of-n study, a
GRPO run (`goodhartlab.integrations.trl.ScorerReward(transform)` is the TRL reward function) or
another transform:

- `Capped`: min(r, cap), the plain ceiling (PAR's repository: `torch.clamp(reward, max=reward_ceil)`).
- `Centred`: r − mean of the prompt's reference rewards.
- `PreferenceAsReward` (PAR, Fu et al. 2025): (1/M) Σ_m σ(k·(r − r_ref,m)) over M reference answers to the
  same prompt: bounded in (0, 1), steepest near the reference, a function of the centred reward. The
  reference rewards are computed once per prompt and cached (`ReferenceRewards`).
- `LengthPenalty`: r − α·max(0, words − limit).
- `Constrained`: the proxy while a constraint scorer stays at or above a threshold, a fixed floor otherwise.
- `Weighted`: Σ w_i r_i over several rewards, each first normalized on reference answers when asked
  (`EnsembleReward`'s normalization, so one scale does not drown another).

NumPy only: the scorers inside may be anything.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np

from goodhartlab.rewards.ensemble import EnsembleReward, Normalization
from goodhartlab.rewards.scorer import Scorer, check_pairs, checked_scores


def word_count(text: str) -> int:
    """Words of a text, as every length rule here counts them: whitespace-separated pieces."""
    return len(text.split())


def _version(*parts: object) -> str:
    return ", ".join(str(part) for part in parts)


class Capped:
    """min(r, cap): what lies above the ceiling is worth nothing more."""

    def __init__(self, scorer: Scorer, cap: float) -> None:
        if not np.isfinite(cap):
            raise ValueError(f"cap must be a finite number, got {cap}")
        self.scorer, self.cap = scorer, float(cap)
        self.name = f"capped-{scorer.name}"
        self.version = _version(scorer.version, f"cap {self.cap:g}")

    def score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        scores: np.ndarray = np.minimum(checked_scores(self.scorer, prompts, responses), self.cap)
        return scores


class ReferenceRewards:
    """The reward of each prompt's reference answers (say, the initial policy's), scored once and kept.

    PAR and centring compare every new answer with these; an RL run asks for the same prompts over and
    over, so scoring the references again each step would multiply the reward model's cost by M."""

    def __init__(self, scorer: Scorer, references: Mapping[str, Sequence[str]]) -> None:
        empty = [prompt for prompt, answers in references.items() if not answers]
        if empty:
            raise ValueError(f"prompt {empty[0][:60]!r} has no reference answers; give each prompt at least one")
        self.scorer, self.references = scorer, {prompt: list(answers) for prompt, answers in references.items()}
        self._cache: dict[str, np.ndarray] = {}
        digest = hashlib.sha256(repr(sorted(self.references.items())).encode()).hexdigest()[:8]
        self.version = _version(scorer.version, f"{len(self.references)} prompts' references {digest}")

    def __call__(self, prompt: str) -> np.ndarray:
        if prompt not in self._cache:
            if prompt not in self.references:
                raise ValueError(f"no reference answers for prompt {prompt[:60]!r}; the references must cover every "
                                 "prompt the transform will see")
            answers = self.references[prompt]
            self._cache[prompt] = checked_scores(self.scorer, [prompt] * len(answers), answers, role="reference")
        return self._cache[prompt]

    def prepare(self, prompts: Sequence[str]) -> None:
        """Score the references of `prompts` now, in one call to the scorer (cheaper than one per prompt)."""
        todo = [p for p in dict.fromkeys(prompts) if p not in self._cache]
        missing = [p for p in todo if p not in self.references]
        if missing:
            self(missing[0])  # the error
        flat_prompts = [p for p in todo for _ in self.references[p]]
        flat_answers = [a for p in todo for a in self.references[p]]
        if not flat_answers:
            return
        scores = checked_scores(self.scorer, flat_prompts, flat_answers, role="reference")
        start = 0
        for prompt in todo:
            count = len(self.references[prompt])
            self._cache[prompt] = scores[start:start + count]
            start += count

    @property
    def scored(self) -> int:
        """Prompts whose references have been scored (each once)."""
        return len(self._cache)


class Centred:
    """r − mean of the prompt's reference rewards: the gain over what the reference policy writes."""

    def __init__(self, references: ReferenceRewards) -> None:
        self.references = references
        self.name = f"centred-{references.scorer.name}"
        self.version = references.version

    def score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        scores = checked_scores(self.references.scorer, prompts, responses)
        self.references.prepare(prompts)
        return scores - np.array([self.references(p).mean() for p in prompts])


class PreferenceAsReward:
    """PAR (Fu et al. 2025): the mean over the prompt's reference answers of σ(k·(r − r_ref)), the reward
    model's own probability that the answer beats a reference. Bounded, so a reward model pushed into its
    errors pays at most 1."""

    def __init__(self, references: ReferenceRewards, *, k: float = 1.0) -> None:
        if not k > 0:
            raise ValueError(f"k (the sigmoid's steepness) must be > 0, got {k}")
        self.references, self.k = references, float(k)
        self.name = f"par-{references.scorer.name}"
        self.version = _version(references.version, f"k {self.k:g}")

    def score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        scores = checked_scores(self.references.scorer, prompts, responses)
        self.references.prepare(prompts)
        return np.array([np.mean(1.0 / (1.0 + np.exp(-self.k * (r - self.references(p)))))
                         for p, r in zip(prompts, scores, strict=True)])


class LengthPenalty:
    """r − α·max(0, words − limit): every word past the limit costs α."""

    def __init__(self, scorer: Scorer, *, limit: int, weight: float) -> None:
        if limit < 0 or weight < 0:
            raise ValueError(f"limit and weight must be >= 0, got {limit} and {weight}")
        self.scorer, self.limit, self.weight = scorer, int(limit), float(weight)
        self.name = f"length-penalized-{scorer.name}"
        self.version = _version(scorer.version, f"{self.weight:g} per word past {self.limit}")

    def score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        scores = checked_scores(self.scorer, prompts, responses)
        excess = np.maximum(np.array([word_count(r) for r in responses]) - self.limit, 0)
        penalized: np.ndarray = scores - self.weight * excess
        return penalized


class WordLimit:
    """1 for an answer within `limit` words, else 0: a constraint for `Constrained`."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1 word, got {limit}")
        self.limit = int(limit)
        self.name, self.version = "within-word-limit", str(self.limit)

    def score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        check_pairs(prompts, responses)
        return np.array([float(word_count(r) <= self.limit) for r in responses])


class Constrained:
    """The proxy while the constraint scorer is at or above `threshold`, `floor` otherwise: pressure on the proxy
    pays only inside the constraint (a length limit, a safety classifier)."""

    def __init__(self, proxy: Scorer, constraint: Scorer, *, threshold: float = 0.5, floor: float = 0.0) -> None:
        self.proxy, self.constraint, self.threshold, self.floor = proxy, constraint, float(threshold), float(floor)
        self.name = f"{proxy.name}-if-{constraint.name}"
        self.version = _version(proxy.version, constraint.version, f">= {self.threshold:g} else {self.floor:g}")

    def score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        proxy = checked_scores(self.proxy, prompts, responses, role="proxy")
        holds = checked_scores(self.constraint, prompts, responses, role="constraint") >= self.threshold
        result: np.ndarray = np.where(holds, proxy, self.floor)
        return result


class Weighted:
    """Σ w_i r_i over several rewards. With `normalization` ('robust' or 'zscore'), each reward is first put on
    a common scale learned from reference answers (`fit`), as an ensemble's members are."""

    def __init__(self, scorers: Sequence[Scorer], weights: Sequence[float], *,
                 normalization: Normalization = "none") -> None:
        if len(scorers) < 1 or len(scorers) != len(weights):
            raise ValueError(f"give one weight per reward: {len(scorers)} rewards, {len(weights)} weights")
        if not all(np.isfinite(w) for w in weights):
            raise ValueError(f"weights must be finite numbers, got {list(weights)}")
        self.scorers, self.weights = list(scorers), np.asarray(weights, dtype=np.float64)
        self.scale = EnsembleReward("mean", normalization=normalization)
        self.name = "+".join(s.name for s in scorers)
        terms = [f"{w:g} x {s.name} {s.version}" for s, w in zip(scorers, self.weights, strict=True)]
        self._unfitted = _version(*terms, normalization)  # fit() adds the scales it learned to this, once
        self.version = self._unfitted

    def member_scores(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        return np.stack([checked_scores(s, prompts, responses) for s in self.scorers])

    def fit(self, prompts: list[str], responses: list[str]) -> Weighted:
        """Learn each reward's location and scale on reference answers (needed unless normalization is 'none')."""
        self.scale.fit(self.member_scores(prompts, responses))
        assert self.scale.location_ is not None and self.scale.scale_ is not None
        self.version = _version(self._unfitted, "scales " + ", ".join(
            f"{loc:.4g}/{sc:.4g}" for loc, sc in zip(self.scale.location_, self.scale.scale_, strict=True)))
        return self

    def score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        combined: np.ndarray = self.weights @ self.scale.normalize(self.member_scores(prompts, responses))
        return combined
