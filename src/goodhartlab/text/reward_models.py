"""Reward models on a language-model backbone: Bradley–Terry, GRM, ensembles and WARM, trained on preference pairs.

Every method is built the same way, so that they are compared on equal footing and the cheap parts are
shared: the backbone (SmolLM2-135M offline) is cut in two, a frozen *trunk* (the embeddings and all but
the top `train_layers` blocks) and a trainable *top* (those blocks, the final norm and a linear reward
head on the last token). The trunk runs once per text; its hidden states are kept and every member,
epoch and method trains its own top on them. That is what makes an ensemble of k cost one trunk and
k tops, in training and in scoring, instead of k whole models (the members share the pretrained
trunk: seed-diverse, not pretrain-diverse, members, which Eisenstein et al. 2023 find share more errors).

- `bt`: the Bradley–Terry loss −log σ(r_c − r_r), plus TRL's centring term c·mean((r_c + r_r)²) when
  `center_rewards_coefficient` is set (Eisenstein et al.; TRL's `RewardConfig.center_rewards_coefficient`).
- `grm` (Yang et al. 2024): the language-model head is kept on the same hidden states as the reward head,
  and the loss is (1 − w)·BT + w·reg, reg = −log σ(β·log π(y_c | x)), the chosen answer's summed token
  log-probability with the prompt's tokens masked; w = 0.01, β = 0.1 by default, as in the public code.
  The LM head is the backbone's (tied to its frozen embeddings), so the regularizer shapes the top's
  hidden states, as GRM's does; the reward head is linear, not GRM's 1,024-unit MLP, so that a GRM
  checkpoint loads as a plain sequence classifier (below).
- `ensemble` (Coste et al. 2023): k members, each its own seed (head initialization and data order), all
  trained with the BT loss; scored by `goodhartlab.rewards.ensemble.EnsembleReward` (mean, worst case or
  uncertainty-weighted, each member normalized on the training answers).
- `warm` (Ramé et al. 2024): k members fine-tuned from one initialization (the same head), differing in
  data order, then their weights averaged into one model; the members are kept, and their spread is the
  disagreement signal that averaging would otherwise discard.

Why our own loop and not TRL's `RewardTrainer`: RewardTrainer computes the BT loss (with its centring
term) on one model; GRM's loss needs the language-model head's log-probabilities of the chosen answer,
and an ensemble or WARM trains k tops on one shared trunk, which a Trainer of one model does not do.
`trainer: trl` trains `bt` with RewardTrainer itself, on the same model with the same frozen blocks
(benchmarks/bench_reward_models.py compares the two).

Saved in Hugging Face format: a folder `AutoModelForSequenceClassification` loads (for `ensemble`, member
0; for `warm`, the averaged model), so TRL's GRPOTrainer takes the folder's path as a `reward_funcs`
entry, plus `reward_model.json` (method, backbone, normalization, training record) and, for `ensemble`
and `warm`, `members.safetensors` (every member's top). `load_reward_model` gives any of them back as a
goodhartlab Scorer; `goodhartlab.integrations.trl.ScorerReward` makes that a TRL reward function.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from goodhartlab.config import ConfigError, above, at_least, config_dict
from goodhartlab.files import write_atomically
from goodhartlab.rewards.ensemble import EnsembleReward
from goodhartlab.rewards.scorer import check_pairs
from goodhartlab.text.models import SMOLLM2
from goodhartlab.text.preferences import PreferencePair, check_preference_pairs

Method = Literal["bt", "grm", "ensemble", "warm"]
METHODS: tuple[str, ...] = ("bt", "grm", "ensemble", "warm")
METADATA = "reward_model.json"
MEMBERS = "members.safetensors"
FORMAT = "goodhartlab-reward-model"


class RewardModelError(ValueError):
    """A reward-model checkpoint or setting that cannot be used; the message names the file or field."""


@dataclass
class RewardModelConfig:
    """How a reward model is trained. The defaults fit a CPU: four trainable blocks, two epochs."""

    method: Method = "bt"
    """bt (Bradley–Terry), grm (with the language-model regularizer), ensemble (k members), warm (k averaged)."""
    backbone: str = SMOLLM2
    """An offline asset name, a local folder or a Hub name: a decoder with model.layers (Llama, Qwen2, Mistral)."""
    members: int = 4
    """ensemble and warm: k, the number of members (at least 2)."""
    train_layers: int = 4
    """The top transformer blocks each member fine-tunes; the blocks below are a frozen trunk all members share."""
    epochs: int = 2
    learning_rate: float = 1e-4
    batch_size: int = 8
    """Pairs per optimizer step."""
    center_rewards_coefficient: float = 0.0
    """TRL's centring (Eisenstein et al.): adds c * mean((r_chosen + r_rejected)^2) to the loss; TRL recommends 0.01."""
    grm_weight: float = 0.01
    """grm: w in (1 - w) * BT + w * reg."""
    grm_beta: float = 0.1
    """grm: beta in reg = -log sigmoid(beta * log pi(chosen | prompt))."""
    max_length: int = 256
    """Tokens of prompt + answer read; longer texts are cut from the end."""
    aggregation: Literal["mean", "worst", "uncertainty"] = "uncertainty"
    """ensemble: how the members' normalized scores combine (Coste et al.: mean, worst case, mean - lambda * var)."""
    uncertainty_weight: float = 0.5
    """ensemble: lambda of the uncertainty-weighted objective."""
    trainer: Literal["own", "trl"] = "own"
    """own: the shared-trunk loop; trl: TRL's RewardTrainer (bt only)."""

    def __post_init__(self) -> None:
        if self.method in ("ensemble", "warm"):
            at_least(self, "members", 2, why=f"a {self.method} of one member is a single reward model: use method bt")
        at_least(self, "train_layers", 1)
        at_least(self, "epochs", 1)
        at_least(self, "batch_size", 1)
        at_least(self, "max_length", 8)
        above(self, "learning_rate", 0)
        at_least(self, "center_rewards_coefficient", 0)
        at_least(self, "uncertainty_weight", 0)
        above(self, "grm_beta", 0)
        if not 0 <= self.grm_weight < 1:
            raise ConfigError("grm_weight", f"must be in [0, 1), got {self.grm_weight}")
        if self.trainer == "trl" and self.method != "bt":
            raise ConfigError("trainer", f"'trl' (RewardTrainer) trains method bt only; {self.method} needs the "
                              "shared-trunk loop (trainer: own)")

    @property
    def k(self) -> int:
        """Members trained: k for ensemble and WARM, else 1."""
        return self.members if self.method in ("ensemble", "warm") else 1


def _say(message: str) -> None:
    print(f"[reward model] {message}", file=sys.stderr, flush=True)


# -- the backbone, cut into a frozen trunk and trainable tops ----------------------------------------------------


def _decoder(model: Any) -> Any:
    """The decoder stack (`model.model` of a Llama-family model), or an error naming what the checkpoint is."""
    base = getattr(model, "model", None)
    if base is None or not hasattr(base, "layers") or not hasattr(base, "norm"):
        architecture = (getattr(model.config, "architectures", None) or [type(model).__name__])[0]
        raise RewardModelError(f"the backbone is a {architecture}; reward models here need a decoder whose blocks "
                               "are model.layers with a final model.norm (Llama, SmolLM2, Qwen2, Mistral)")
    return base


def _view(base: Any, layers: Sequence[Any], norm: Any) -> Any:
    """The decoder `base` with other blocks and final norm: its own forward (masks, rotary positions) runs
    them, so no model-specific loop is written here. Shares every other module with `base`."""
    view = copy.copy(base)
    view._modules = dict(base._modules)
    view.layers = torch.nn.ModuleList(layers)
    view.norm = norm
    return view


def backbone_identity(config: Any) -> dict[str, Any]:
    """What a checkpoint's trunk must match: architecture and shapes."""
    return {"model_type": config.model_type, "hidden_size": config.hidden_size,
            "num_hidden_layers": config.num_hidden_layers, "vocab_size": config.vocab_size}


class Trunk:
    """The frozen part of a backbone: embeddings and the first blocks, run without gradients."""

    def __init__(self, classifier: Any, tokenizer: Any, train_layers: int, *, name: str, max_length: int = 256) -> None:
        self.classifier, self.tokenizer, self.name, self.max_length = classifier.eval(), tokenizer, name, max_length
        self.decoder = _decoder(classifier)
        blocks = len(self.decoder.layers)
        if not 1 <= train_layers < blocks:
            raise RewardModelError(f"train_layers is {train_layers}, but the backbone has {blocks} blocks; it must be "
                                   f"between 1 and {blocks - 1} (the rest is the shared trunk)")
        self.frozen = blocks - train_layers
        for parameter in classifier.parameters():
            parameter.requires_grad_(False)
        self._trunk = _view(self.decoder, list(self.decoder.layers[:self.frozen]), torch.nn.Identity())
        self.identity = backbone_identity(classifier.config)
        self.lm_head = _lm_head(classifier) if getattr(classifier.config, "tie_word_embeddings", False) else None

    @property
    def pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return int(pad if pad is not None else self.tokenizer.eos_token_id)

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's tokens as TRL's GRPOTrainer gives them to a reward model (no special tokens), cut at
        max_length."""
        encoded = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [ids[:self.max_length] or [self.pad_id] for ids in encoded]

    def states(self, ids: Sequence[Sequence[int]], batch_size: int = 16) -> list[Any]:
        """The trunk's hidden states of each token sequence, (length, width) each, float32."""
        out: list[Any] = [None] * len(ids)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        with torch.no_grad():
            for start in range(0, len(order), batch_size):
                batch = order[start:start + batch_size]
                input_ids, mask = _right_padded([ids[i] for i in batch], self.pad_id)
                hidden = self._trunk(input_ids=input_ids, attention_mask=mask).last_hidden_state
                for row, i in enumerate(batch):
                    out[i] = hidden[row, :len(ids[i])].clone()
        return out

    def top(self, seed: int | None = None) -> RewardTop:
        """A fresh top: copies of the pretrained top blocks and final norm, and a new linear reward head
        (its initialization set by `seed`)."""
        return RewardTop(self, seed)


def _right_padded(rows: Sequence[Sequence[int]], pad: int) -> tuple[Any, Any]:
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, :len(row)] = 1
    return ids, mask


def _stack(states: Sequence[Any]) -> tuple[Any, Any, Any]:
    """Right-padded hidden states, their mask, and each row's last real position."""
    width = max(len(s) for s in states)
    hidden = states[0].new_zeros((len(states), width, states[0].shape[-1]))
    mask = torch.zeros((len(states), width), dtype=torch.long)
    for i, s in enumerate(states):
        hidden[i, :len(s)] = s
        mask[i, :len(s)] = 1
    return hidden, mask, torch.tensor([len(s) - 1 for s in states])


class RewardTop(torch.nn.Module):
    """The trainable part of one reward model: the top blocks, the final norm, and the reward head."""

    def __init__(self, trunk: Trunk, seed: int | None) -> None:
        super().__init__()
        decoder = trunk.decoder
        self.layers = torch.nn.ModuleList(copy.deepcopy(list(decoder.layers[trunk.frozen:])))
        self.norm = copy.deepcopy(decoder.norm)
        self.score = copy.deepcopy(trunk.classifier.score)
        if seed is not None:
            generator = torch.Generator().manual_seed(seed)
            std = getattr(trunk.classifier.config, "initializer_range", 0.02)
            with torch.no_grad():
                self.score.weight.copy_(torch.randn(self.score.weight.shape, generator=generator) * std)
        for parameter in self.parameters():
            parameter.requires_grad_(True)
        self._decoder = [decoder]  # a list: not registered as a submodule (its weights are the trunk's)

    def _counterparts(self, classifier: Any, frozen: int) -> list[tuple[Any, Any]]:
        """Each module of this top beside the one it stands for in a whole classifier of the same backbone."""
        decoder = _decoder(classifier)
        return [*zip(self.layers, decoder.layers[frozen:], strict=True), (self.norm, decoder.norm),
                (self.score, classifier.score)]

    def copy_from(self, classifier: Any, frozen: int) -> RewardTop:
        """Take the top blocks, final norm and head of a whole classifier (trained or loaded whole)."""
        with torch.no_grad():
            for mine, theirs in self._counterparts(classifier, frozen):
                mine.load_state_dict(theirs.state_dict())
        return self

    def copy_into(self, classifier: Any, frozen: int) -> None:
        """Write this top into a whole classifier, which then scores as the top does."""
        with torch.no_grad():
            for mine, theirs in self._counterparts(classifier, frozen):
                theirs.load_state_dict(mine.state_dict())

    def hidden(self, states: Any, mask: Any) -> Any:
        """The final hidden states (after the norm) of right-padded trunk states."""
        view = _view(self._decoder[0], list(self.layers), self.norm)
        return view(inputs_embeds=states, attention_mask=mask).last_hidden_state

    def rewards(self, states: Any, mask: Any, last: Any) -> Any:
        """The reward of each right-padded row, read at its last real token (as a sequence classifier does)."""
        return self.score(self.hidden(states, mask)[torch.arange(len(last)), last]).squeeze(-1)


# -- training ------------------------------------------------------------------------------------------------


@dataclass
class EncodedPairs:
    """Pairs as the trunk has read them: chosen and rejected states, and where each chosen answer starts."""

    chosen: list[Any]
    rejected: list[Any]
    chosen_ids: list[list[int]]
    answer_start: list[int]

    def __len__(self) -> int:
        return len(self.chosen)


def answer_starts(trunk: Trunk, prompts: Sequence[str], ids: Sequence[Sequence[int]]) -> list[int]:
    """Where each answer's tokens begin in the tokens of prompt + answer (`ids`, as `Trunk.token_ids` gives them)."""
    prompt_ids = trunk.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    # a token that straddles the prompt's end belongs to the answer
    return [len(own) if list(row[:len(own)]) == own else max(len(own) - 1, 0)
            for row, own in zip(ids, prompt_ids, strict=True)]


def encode_pairs(trunk: Trunk, pairs: Sequence[PreferencePair], source: str = "pairs") -> EncodedPairs:
    """Run the trunk over every pair's two texts once; every member and epoch trains on the result."""
    chosen_ids = trunk.token_ids([p.prompt + p.chosen for p in pairs])
    rejected_ids = trunk.token_ids([p.prompt + p.rejected for p in pairs])
    starts = answer_starts(trunk, [p.prompt for p in pairs], chosen_ids)
    for row, (start, ids, rejected) in enumerate(zip(starts, chosen_ids, rejected_ids, strict=True), 1):
        if start >= min(len(ids), len(rejected)):
            raise RewardModelError(f"{source}, row {row}: the prompt fills all {trunk.max_length} tokens the model "
                                   "reads, so no answer token is left to score; raise max_length or shorten it")
    states = trunk.states(chosen_ids + rejected_ids)
    return EncodedPairs(states[:len(pairs)], states[len(pairs):], chosen_ids, starts)


def bradley_terry_loss(chosen: Any, rejected: Any, center_coefficient: float = 0.0) -> Any:
    """−log σ(r_c − r_r), plus TRL's centring term c·mean((r_c + r_r)²) (its RewardTrainer's formula)."""
    loss = -torch.nn.functional.logsigmoid(chosen - rejected).mean()
    if center_coefficient:
        loss = loss + center_coefficient * torch.mean((chosen + rejected) ** 2)
    return loss


def grm_regularizer(logits: Any, targets: Any, mask: Any, beta: float) -> Any:
    """GRM's default regularizer: −log σ(β·log π(y_c | x)), the summed log-probability of the chosen answer's
    tokens (`mask` 1 on them, 0 on the prompt and padding)."""
    token_logp = torch.log_softmax(logits.float(), -1).gather(-1, targets[..., None])[..., 0]
    return -torch.nn.functional.logsigmoid(beta * (token_logp * mask).sum(-1)).mean()


def _answer_positions(data: EncodedPairs, batch: Sequence[int], width: int) -> tuple[Any, Any, Any]:
    """For GRM: the positions whose next token is an answer token, those tokens, and a mask over them."""
    positions = torch.zeros((len(batch), width - 1), dtype=torch.long)
    targets = torch.zeros_like(positions)
    mask = torch.zeros(positions.shape)
    for row, i in enumerate(batch):
        ids = data.chosen_ids[i]
        first = max(data.answer_start[i], 1)  # with no prompt, the answer's first token has nothing to predict it
        count = len(ids) - first
        if count <= 0:
            continue
        positions[row, :count] = torch.arange(first - 1, len(ids) - 1)
        targets[row, :count] = torch.tensor(ids[first:])
        mask[row, :count] = 1.0
    return positions, targets, mask


def train_top(trunk: Trunk, data: EncodedPairs, cfg: RewardModelConfig, *, seed: int, head_seed: int,
              grm: bool = False) -> tuple[RewardTop, dict[str, Any]]:
    """One member: its top trained on the encoded pairs for cfg.epochs, data order from `seed`."""
    top = trunk.top(head_seed)
    top.train()
    optimizer = torch.optim.AdamW([p for p in top.parameters() if p.requires_grad], lr=cfg.learning_rate,
                                  weight_decay=0.0)
    rng = np.random.default_rng(seed)
    lm_head = trunk.lm_head if grm else None
    if grm and lm_head is None:
        raise RewardModelError("method grm keeps the backbone's language-model head; this backbone does not tie it to "
                               "its embeddings, so its sequence classifier does not hold it (use a tied backbone such "
                               "as SmolLM2)")
    losses = []
    start = time.perf_counter()
    for _ in range(cfg.epochs):
        order = rng.permutation(len(data))
        for begin in range(0, len(order), cfg.batch_size):
            batch = order[begin:begin + cfg.batch_size].tolist()
            states = [data.chosen[i] for i in batch] + [data.rejected[i] for i in batch]
            hidden_in, mask, last = _stack(states)
            hidden = top.hidden(hidden_in, mask)
            rewards = top.score(hidden[torch.arange(len(last)), last]).squeeze(-1)
            chosen, rejected = rewards[:len(batch)], rewards[len(batch):]
            loss = bradley_terry_loss(chosen, rejected, cfg.center_rewards_coefficient)
            if lm_head is not None:
                positions, targets, answer_mask = _answer_positions(data, batch, hidden.shape[1])
                picked = hidden[:len(batch)].gather(1, positions[..., None].expand(-1, -1, hidden.shape[-1]))
                reg = grm_regularizer(lm_head(picked), targets, answer_mask, cfg.grm_beta)
                loss = (1 - cfg.grm_weight) * loss + cfg.grm_weight * reg
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
    top.eval()
    return top, {"loss_first": losses[0], "loss_last": float(np.mean(losses[-max(1, len(losses) // 10):])),
                 "steps": len(losses), "seconds": round(time.perf_counter() - start, 2)}


def average_tops(trunk: Trunk, tops: Sequence[RewardTop]) -> RewardTop:
    """WARM: the parameter-wise mean of tops fine-tuned from one initialization."""
    averaged = trunk.top(None)
    states = [top.state_dict() for top in tops]
    with torch.no_grad():
        averaged.load_state_dict({name: torch.stack([s[name] for s in states]).mean(0) for name in states[0]})
    averaged.eval()
    return averaged


# -- the reward model: trunk + tops, as a scorer -------------------------------------------------------------


@dataclass
class RewardModel:
    """A trained reward model: one trunk and the tops that score (one for bt, grm and WARM's average; k for an
    ensemble), WARM's members kept for their disagreement, and an ensemble's normalization."""

    trunk: Trunk
    tops: list[RewardTop]
    method: str
    members: list[RewardTop] = field(default_factory=list)
    """WARM's members before averaging (an ensemble's are `tops`)."""
    combine: EnsembleReward | None = None
    record: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 16
    name: str = field(init=False)
    version: str = field(init=False)
    """A digest of the tops' weights (and an ensemble's objective and normalization): cached scores of a
    retrained model are never served."""

    def __post_init__(self) -> None:
        self.name = f"reward-model-{self.method}"
        digest = hashlib.sha256()
        for top in self.tops:
            for tensor in top.state_dict().values():
                digest.update(tensor.detach().float().numpy().tobytes())
        combine = self.combine
        if combine is not None and combine.location_ is not None and combine.scale_ is not None:
            digest.update(json.dumps([combine.aggregation, combine.uncertainty_weight, combine.location_.tolist(),
                                      combine.scale_.tolist()]).encode())
        self.version = f"{self.method} on {self.trunk.name}, {digest.hexdigest()[:12]}"

    def member_scores(self, prompts: list[str], responses: list[str], *, tops: Sequence[RewardTop] | None = None
                      ) -> np.ndarray:
        """(members, responses): each top's reward, the trunk run once per text for all of them."""
        check_pairs(prompts, responses)
        tops = list(self.tops if tops is None else tops)
        scores = np.zeros((len(tops), len(responses)))
        if not responses:
            return scores
        ids = self.trunk.token_ids([p + r for p, r in zip(prompts, responses, strict=True)])
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for start in range(0, len(order), self.batch_size):  # the trunk's states of one batch at a time
            batch = order[start:start + self.batch_size]
            states = self.trunk.states([ids[i] for i in batch], batch_size=len(batch))
            scores[:, batch] = top_scores(tops, states, batch_size=len(batch))
        return scores

    def aggregate(self, member_scores: np.ndarray) -> np.ndarray:
        """The model's reward from its members' scores: the one top's, or the ensemble's objective."""
        if self.combine is None:
            single: np.ndarray = member_scores[0]
            return single
        return self.combine.aggregate(member_scores)

    def score(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        return self.aggregate(self.member_scores(prompts, responses))

    def disagreement(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        """The members' variance on each response (normalized members for an ensemble, WARM's raw members):
        it grows as the policy leaves the training data (Coste et al.), and averaging (WARM) would hide it."""
        if self.method == "warm":
            return self.member_scores(prompts, responses, tops=self.members).var(axis=0)
        if self.combine is None:
            raise RewardModelError(f"a {self.method} reward model has one member: it has no disagreement")
        return self.combine.disagreement(self.member_scores(prompts, responses))

    def with_aggregation(self, aggregation: str, uncertainty_weight: float | None = None) -> RewardModel:
        """The same ensemble scored with another objective (the members and normalization kept)."""
        if self.combine is None:
            raise RewardModelError(f"a {self.method} reward model has no members to aggregate")
        combine = copy.copy(self.combine)
        combine.aggregation = aggregation  # type: ignore[assignment]
        if uncertainty_weight is not None:
            combine.uncertainty_weight = uncertainty_weight
        combine.__post_init__()
        return RewardModel(self.trunk, self.tops, self.method, self.members, combine, self.record, self.batch_size)

    def accuracy(self, pairs: Sequence[PreferencePair]) -> np.ndarray:
        """1 where the model scores the chosen answer above the rejected one, else 0 (a tie counts 1/2)."""
        prompts = [p.prompt for p in pairs]
        chosen = self.score(prompts, [p.chosen for p in pairs])
        rejected = self.score(prompts, [p.rejected for p in pairs])
        result: np.ndarray = (chosen > rejected) + 0.5 * (chosen == rejected)
        return result


def load_trunk(backbone: str, train_layers: int, *, max_length: int = 256) -> Trunk:
    """The backbone as a one-output sequence classifier (its reward head new), cut into trunk and tops."""
    from transformers import AutoModelForSequenceClassification

    from goodhartlab.text.models import _load_error, _source, load_tokenizer

    tokenizer = load_tokenizer(backbone)
    tokenizer.padding_side = "right"
    source = _source(backbone, True)
    try:
        with _quiet():  # the new reward head is reported as missing from the checkpoint: it is meant to be
            classifier = AutoModelForSequenceClassification.from_pretrained(source, num_labels=1, dtype=torch.float32)
    except (OSError, ValueError) as error:
        raise _load_error(backbone, error) from None
    classifier.config.pad_token_id = tokenizer.pad_token_id
    return Trunk(classifier, tokenizer, train_layers, name=backbone, max_length=max_length)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """transformers' warnings off for a block (its load report of the reward head it initializes)."""
    from transformers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)


def _lm_head(classifier: Any) -> Any:
    """The language-model head GRM keeps: the backbone's output embedding, tied to its input embeddings (frozen
    with the trunk) in SmolLM2; a separate head would need the causal LM's weights."""
    embeddings = classifier.get_input_embeddings().weight
    head = torch.nn.Linear(embeddings.shape[1], embeddings.shape[0], bias=False)
    head.weight = embeddings
    return head


def train_reward_model(cfg: RewardModelConfig, pairs: Sequence[PreferencePair], *, seed: int = 0,
                       trunk: Trunk | None = None, encoded: EncodedPairs | None = None,
                       source: str = "pairs") -> RewardModel:
    """Train `cfg.method` on the pairs. `trunk` and `encoded` let several methods share one trunk pass."""
    check_preference_pairs(pairs, source)
    if cfg.trainer == "trl":
        return train_with_reward_trainer(cfg, pairs, seed=seed, trunk=trunk)
    trunk = trunk or load_trunk(cfg.backbone, cfg.train_layers, max_length=cfg.max_length)
    start = time.perf_counter()
    data = encoded or encode_pairs(trunk, pairs, source)
    encode_seconds = time.perf_counter() - start
    tops, records = [], []
    for member in range(cfg.k):
        # ensemble members differ in head and data order; WARM's share one initialization (head seed)
        head_seed = seed * 1000 + (member if cfg.method == "ensemble" else 0)
        top, record = train_top(trunk, data, cfg, seed=seed * 1000 + member, head_seed=head_seed,
                                grm=cfg.method == "grm")
        tops.append(top)
        records.append(record)
    record = {"config": config_dict(cfg), "seed": seed, "pairs": len(pairs), "encode_seconds": round(encode_seconds, 2),
              "members": records, "train_seconds": round(sum(r["seconds"] for r in records), 2)}
    if cfg.method == "warm":
        return RewardModel(trunk, [average_tops(trunk, tops)], "warm", members=tops, record=record)
    if cfg.method == "ensemble":
        reference = top_scores(tops, data.chosen + data.rejected)  # the training answers
        combine = EnsembleReward(cfg.aggregation, cfg.uncertainty_weight).fit(reference)
        return RewardModel(trunk, tops, "ensemble", combine=combine, record=record)
    return RewardModel(trunk, tops, cfg.method, record=record)


def top_scores(tops: Sequence[RewardTop], states: Sequence[Any], *, batch_size: int = 16) -> np.ndarray:
    """(tops, texts): each top's reward of trunk states already computed, in batches of similar length, so
    texts the trunk has read once are scored by any number of tops (members, methods, seeds)."""
    scores = np.zeros((len(tops), len(states)))
    order = sorted(range(len(states)), key=lambda i: len(states[i]))
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            hidden_in, mask, last = _stack([states[i] for i in batch])
            for m, top in enumerate(tops):
                scores[m, batch] = top.rewards(hidden_in, mask, last).numpy()
    return scores


def train_with_reward_trainer(cfg: RewardModelConfig, pairs: Sequence[PreferencePair], *, seed: int = 0,
                              trunk: Trunk | None = None) -> RewardModel:
    """Method bt through TRL's RewardTrainer: the same classifier with the same frozen blocks, TRL's loss
    (and centring term), then cut into trunk and top like the others."""
    import tempfile

    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    from goodhartlab.text.models import without_activation_checkpointing

    trunk = trunk or load_trunk(cfg.backbone, cfg.train_layers, max_length=cfg.max_length)
    classifier = copy.deepcopy(trunk.classifier)
    decoder = _decoder(classifier)
    top_seed = trunk.top(seed * 1000)  # the same head initialization as the own loop's first member
    classifier.score.weight.data.copy_(top_seed.score.weight.data)
    for parameter in classifier.parameters():
        parameter.requires_grad_(False)
    for module in [*decoder.layers[trunk.frozen:], decoder.norm, classifier.score]:
        for parameter in module.parameters():
            parameter.requires_grad_(True)
    dataset = Dataset.from_dict({"prompt": [p.prompt for p in pairs], "chosen": [p.chosen for p in pairs],
                                 "rejected": [p.rejected for p in pairs]})
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="goodhartlab-rm-") as scratch:
        args = RewardConfig(output_dir=scratch, num_train_epochs=cfg.epochs, learning_rate=cfg.learning_rate,
                            per_device_train_batch_size=cfg.batch_size, max_length=cfg.max_length,
                            center_rewards_coefficient=cfg.center_rewards_coefficient or None,
                            lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, seed=seed, data_seed=seed,
                            logging_steps=10, save_strategy="no", report_to="none", disable_tqdm=True,
                            bf16=bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported()),
                            **without_activation_checkpointing())
        trainer = RewardTrainer(model=classifier, args=args, train_dataset=dataset, processing_class=trunk.tokenizer)
        trained = len(trainer.train_dataset)  # type: ignore[arg-type]  # it drops pairs over max_length
        trainer.train()
    seconds = time.perf_counter() - start
    top = trunk.top(None).copy_from(classifier, trunk.frozen)
    top.eval()
    record = {"config": config_dict(cfg), "seed": seed, "pairs": trained, "dropped_as_too_long": len(pairs) - trained,
              "train_seconds": round(seconds, 2), "trainer": "trl RewardTrainer"}
    return RewardModel(trunk, [top], "bt", record=record)


# -- saving and loading ----------------------------------------------------------------------------------------


def save_reward_model(model: RewardModel, folder: str | Path) -> Path:
    """The model as a Hugging Face sequence-classifier folder (the scoring model: for an ensemble, member 0),
    with reward_model.json and, for ensemble and WARM, members.safetensors. Written atomically: a reader
    sees the whole folder or none of it. An existing folder is refused, never half overwritten."""
    from safetensors.torch import save_file

    target = Path(folder)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise RewardModelError(f"{target} exists; remove it or choose another folder (a saved reward model is never "
                               "overwritten in place)")
    if target.is_dir():
        target.rmdir()

    classifier = copy.deepcopy(model.trunk.classifier)
    model.tops[0].copy_into(classifier, model.trunk.frozen)
    members = model.tops if model.method == "ensemble" else model.members
    metadata: dict[str, Any] = {
        "format": FORMAT, "version": 1, "method": model.method, "backbone": model.trunk.name,
        "backbone_identity": model.trunk.identity, "train_layers": len(model.tops[0].layers),
        "members": len(members) or 1, "record": model.record}
    if model.combine is not None and model.combine.location_ is not None and model.combine.scale_ is not None:
        metadata["ensemble"] = {"aggregation": model.combine.aggregation,
                                "uncertainty_weight": model.combine.uncertainty_weight,
                                "normalization": model.combine.normalization,
                                "location": model.combine.location_.tolist(), "scale": model.combine.scale_.tolist()}

    def write(staged: Path) -> None:
        classifier.save_pretrained(staged)
        model.trunk.tokenizer.save_pretrained(staged)
        if members:
            tensors = {f"{m}.{name}": tensor.contiguous() for m, top in enumerate(members)
                       for name, tensor in top.state_dict().items()}
            save_file(tensors, str(staged / MEMBERS))
        (staged / METADATA).write_text(json.dumps(metadata, indent=1) + "\n", encoding="utf-8")

    return write_atomically(target, write)


def load_reward_model(folder: str | Path, *, backbone: str | None = None, batch_size: int = 16) -> RewardModel:
    """A saved reward model as a Scorer. A plain Hugging Face sequence classifier (no reward_model.json) loads
    as a single model. `backbone`, if given, must be the one the checkpoint was trained on."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    path = Path(folder)
    if not (path / "config.json").is_file():
        raise RewardModelError(f"{path}: not a reward-model folder (no config.json); train one with "
                               "`goodhartlab rm train`")
    metadata: dict[str, Any] = {}
    if (path / METADATA).is_file():
        try:
            metadata = json.loads((path / METADATA).read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise RewardModelError(f"{path / METADATA}: not JSON ({error.msg})") from None
        if metadata.get("format") != FORMAT:
            raise RewardModelError(f"{path / METADATA}: field 'format' is {metadata.get('format')!r}, not {FORMAT!r}")
    try:
        config = AutoConfig.from_pretrained(str(path))
    except (OSError, ValueError) as error:
        raise RewardModelError(f"{path / 'config.json'}: not a model configuration ({_first_line(error)})") from None
    identity = backbone_identity(config)
    expected = metadata.get("backbone_identity")
    if expected is not None and expected != identity:
        raise RewardModelError(f"{path / 'config.json'}: a {identity['model_type']} model of width "
                               f"{identity['hidden_size']} and {identity['num_hidden_layers']} blocks, but {METADATA} "
                               f"says it was trained on {expected}: the folder mixes checkpoints of two backbones")
    try:
        classifier = AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=1, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError, RuntimeError) as error:
        raise RewardModelError(f"{path}: cannot load it as a sequence classifier ({_first_line(error)}); are "
                               "config.json and the weights from the same model?") from None
    if backbone is not None:
        trained_on = metadata.get("backbone", str(path))
        if trained_on != backbone:
            raise RewardModelError(f"{path}: trained on backbone {trained_on!r}, not {backbone!r}; a reward model "
                                   "scores with the backbone it was trained on")
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    train_layers = int(metadata.get("train_layers", 1))
    trunk = Trunk(classifier, tokenizer, train_layers, name=str(metadata.get("backbone", path)),
                  max_length=int(metadata.get("record", {}).get("config", {}).get("max_length", 256)))
    first = trunk.top(None).copy_from(classifier, trunk.frozen)
    first.eval()
    method = str(metadata.get("method", "bt"))
    members: list[RewardTop] = []
    if (path / MEMBERS).is_file():
        try:
            tensors = load_file(str(path / MEMBERS))
        except (SafetensorError, OSError) as error:
            raise RewardModelError(f"{path / MEMBERS}: cannot read it ({_first_line(error)})") from None
        for m in range(int(metadata.get("members", 0))):
            top = trunk.top(None)
            state = {name[len(f"{m}."):]: tensor for name, tensor in tensors.items() if name.startswith(f"{m}.")}
            expected_state = top.state_dict()
            unknown = sorted(set(state) - set(expected_state))
            if unknown:
                raise RewardModelError(f"{path / MEMBERS}: member {m} has tensor '{unknown[0]}', which this "
                                       f"backbone's top does not: a member of another backbone or format")
            for name, tensor in expected_state.items():
                if name not in state:
                    raise RewardModelError(f"{path / MEMBERS}: member {m} lacks tensor '{name}'")
                if tuple(state[name].shape) != tuple(tensor.shape):
                    raise RewardModelError(f"{path / MEMBERS}: member {m}'s tensor '{name}' has shape "
                                           f"{tuple(state[name].shape)}, but this checkpoint's backbone needs "
                                           f"{tuple(tensor.shape)}: a member of another backbone")
            top.load_state_dict(state)
            top.eval()
            members.append(top)
    combine = None
    if method == "ensemble":
        if len(members) < 2:
            raise RewardModelError(f"{path}: an ensemble checkpoint needs {MEMBERS} with at least 2 members")
        settings = metadata.get("ensemble", {})
        combine = EnsembleReward(settings.get("aggregation", "mean"), settings.get("uncertainty_weight", 0.5),
                                 settings.get("normalization", "robust"))
        combine.location_ = np.asarray(settings.get("location", np.zeros(len(members))), dtype=np.float64)
        combine.scale_ = np.asarray(settings.get("scale", np.ones(len(members))), dtype=np.float64)
        if combine.location_.size != len(members):
            raise RewardModelError(f"{path / METADATA}: field 'ensemble.location' has {combine.location_.size} values "
                                   f"for {len(members)} members")
        return RewardModel(trunk, members, method, combine=combine, record=metadata.get("record", {}),
                           batch_size=batch_size)
    return RewardModel(trunk, [first], method, members=members, record=metadata.get("record", {}),
                       batch_size=batch_size)


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def reward_function(folder: str | Path, **kwargs: Any) -> Callable[..., list[float | None]]:
    """A saved reward model as a TRL reward function (any method; a single model also loads as the folder's path)."""
    from goodhartlab.integrations.trl import ScorerReward

    model = load_reward_model(folder)
    return ScorerReward(model, name=kwargs.pop("name", model.name), **kwargs)


__all__ = ["METHODS", "RewardModel", "RewardModelConfig", "RewardModelError", "Trunk", "answer_starts",
           "bradley_terry_loss", "encode_pairs", "grm_regularizer", "load_reward_model", "load_trunk",
           "reward_function", "save_reward_model", "top_scores", "train_reward_model"]
