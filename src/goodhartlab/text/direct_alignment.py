"""Direct alignment (DPO, IPO, SLiC-hinge) on proxy-labelled pairs, measured by gold win rate against √KL.

The Rafailov et al. (2024) setting in miniature: the policy samples two responses per training
prompt, the task's *proxy* picks the chosen one, and TRL's `DPOTrainer` trains one epoch with a
given loss and β (the KL budget; smaller β lets the policy move further). At checkpoints evenly
spaced inside that epoch the current policy samples responses to held-out prompts, and we record

- the gold win rate against the reference policy's samples on the same prompts (every policy
  sample against every reference sample of its prompt; ties count one half),
- KL(policy ‖ reference) in nats per sequence: the mean over policy samples of the summed
  log π − log π_ref of the sampled tokens (the k1 estimator; k3 is stored beside it),
- proxy and gold means and the mean response length in tokens,
- the R² of a linear fit of the implicit reward β·(log π − log π_ref)(y|x) on response length,
  over the evaluated policy samples (`length_r2`, the policy's own outputs) and over chosen and
  rejected responses of training pairs (`length_r2_pairs`, the data the loss sees). It is None
  when every response has the same length (all cut at `max_new_tokens`), where no fit exists.
  The summed log-ratio is used for every loss, although TRL's IPO trains on its per-token mean.

Step 0 is the reference itself: KL 0 and win rate ½ by definition, proxy and gold from the
reference samples. One run is one (loss, β); a spec sweeps both as variants, so the report draws
win rate against √KL for every budget in one figure. The learning rate is constant, so two
checkpoints differ by training alone, not by a decayed step size.
"""

from __future__ import annotations

import copy
import math
import sys
import tempfile
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from goodhartlab.config import ConfigError, above, at_least, config_dict, non_empty, one_of
from goodhartlab.results import CurvePoints, RunResult
from goodhartlab.rewards.scorer import Scorer, checked_scores
from goodhartlab.text.gold import GOLD_BIGRAMS
from goodhartlab.text.models import SMOLLM2, Device
from goodhartlab.text.proxies import LEXICONS
from goodhartlab.text.sampling import positions_from_mask
from goodhartlab.text.tasks import TASKS, Task, check_gold, resolve_task, task_gold

LOSSES = {"sigmoid": "DPO", "ipo": "IPO", "hinge": "SLiC (hinge)"}
WIN_RATE_CURVE = "gold win rate vs √KL"
KL_CURVE = "proxy and gold vs KL"


@dataclass
class DirectAlignmentConfig:
    task: str = "sentiment"  # a built-in task, or 'package.module:Class'
    gold: str = GOLD_BIGRAMS  # or multiemo-coherent: the hardened gold (Gemma-3-270M coherence); a user's task: its own
    proxy: str = "afinn"  # the lexicon that labels the pairs (a user's task: one of its own proxies)
    policy: str = SMOLLM2  # an offline asset name, a local model folder or a Hub name
    loss: Literal["sigmoid", "ipo", "hinge"] = "sigmoid"  # sigmoid (DPO), ipo (IPO) or hinge (SLiC); TRL's loss_type
    beta: float = 0.1  # the KL budget: smaller β lets the policy drift further from the reference
    pairs: int = 128  # training prompts, two samples each; pairs the proxy scores equal are dropped
    eval_prompts: int = 32  # held-out prompts for the checkpoints
    eval_samples: int = 2  # samples per held-out prompt, from the policy and from the reference
    checkpoints: int = 4  # evaluations evenly spaced within the epoch, the last at its end
    learning_rate: float = 5e-6
    train_batch_size: int = 8  # pairs per optimizer step
    max_new_tokens: int = 32
    sample_batch_size: int = 64  # sequences per generation or scoring forward pass
    r2_pairs: int = 32  # training pairs whose chosen and rejected also enter `length_r2_pairs`; 0 skips it
    # where policy and reference run: cpu, cuda or auto (CUDA when torch sees one); on CUDA with bfloat16 support
    # training uses bfloat16 mixed precision. On a Ray cluster 'cuda' asks for a GPU.
    device: Device = "auto"

    def __post_init__(self) -> None:
        task = resolve_task(self.task)
        if self.task in TASKS:
            one_of(self, "proxy", LEXICONS)
        check_gold(self)
        non_empty(self, "policy")
        above(self, "beta", 0)
        above(self, "learning_rate", 0)
        for name in ("pairs", "eval_prompts", "eval_samples", "checkpoints", "train_batch_size", "max_new_tokens",
                     "sample_batch_size"):
            at_least(self, name, 1)
        at_least(self, "r2_pairs", 0)
        if self.pairs + self.eval_prompts > task.prompt_count:
            raise ConfigError("pairs", f"({self.pairs}) + eval_prompts ({self.eval_prompts}) = "
                              f"{self.pairs + self.eval_prompts} is more than the {self.task} task's "
                              f"{task.prompt_count} prompts (each pair and each held-out prompt has its own); ask for "
                              "fewer")
        steps = math.ceil(self.pairs / self.train_batch_size)
        if steps < self.checkpoints:
            raise ConfigError("checkpoints", f"({self.checkpoints}) is more than the {steps} optimizer steps that "
                              f"pairs = {self.pairs} with train_batch_size = {self.train_batch_size} give in the "
                              "epoch; raise pairs or lower train_batch_size")


def checkpoint_steps(total_steps: int, checkpoints: int) -> list[int]:
    """`checkpoints` optimizer steps evenly spaced through the epoch, the last one its final step."""
    if total_steps < checkpoints:
        raise ValueError(f"the epoch has {total_steps} optimizer steps, fewer than checkpoints = {checkpoints}")
    return [math.ceil(k * total_steps / checkpoints) for k in range(1, checkpoints + 1)]


def win_rate(policy_gold: np.ndarray, reference_gold: np.ndarray) -> tuple[float, float]:
    """P(gold(policy sample) > gold(reference sample)) on the same prompt, ties one half, and its
    standard error over prompts. Arrays are (prompts, samples); every pair within a prompt counts."""
    policy = np.asarray(policy_gold, dtype=np.float64)
    reference = np.asarray(reference_gold, dtype=np.float64)
    if policy.ndim != 2 or reference.ndim != 2 or policy.shape[0] != reference.shape[0]:
        raise ValueError(f"gold scores must be (prompts, samples) arrays over the same prompts, got shapes "
                         f"{policy.shape} and {reference.shape}")
    wins = (policy[:, :, None] > reference[:, None, :]) + 0.5 * (policy[:, :, None] == reference[:, None, :])
    per_prompt = wins.mean(axis=(1, 2))
    se = float(per_prompt.std(ddof=1) / np.sqrt(per_prompt.size)) if per_prompt.size > 1 else float("nan")
    return float(per_prompt.mean()), se


def r_squared(x: np.ndarray, y: np.ndarray) -> float | None:
    """R² of the least-squares line of y on x (the squared correlation); None when either is constant."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) <= 1e-9 * max(1.0, float(np.abs(y).max())):
        return None
    r = float(np.corrcoef(x, y)[0, 1])
    return min(r * r, 1.0)


@dataclass
class Samples:
    """Sampled responses with the exact token ids, so log-probabilities score what was sampled.

    Each batch keeps the generated sequences (prompt left-padded, response after it), their
    attention mask and a mask of the scored response tokens (up to and including the first EOS)."""

    texts: list[str]
    prompt_index: list[int]
    lengths: np.ndarray
    batches: list[tuple[Any, Any, Any]]


def sample_responses(model: Any, tokenizer: Any, prompts: list[str], samples: int, *, max_new_tokens: int,
                     batch_size: int, seed: int) -> Samples:
    """`samples` responses per prompt at temperature 1, keeping their token ids for KL estimation."""
    from goodhartlab.text.sampling import sample_tokens

    tokens = sample_tokens(model, tokenizer, prompts, samples, max_new_tokens=max_new_tokens, batch_size=batch_size,
                           seed=seed)
    prompt_ids = [tokenizer(prompt)["input_ids"] for prompt in prompts]
    rows = [(prompt_ids[i], response) for i, responses in enumerate(tokens) for response in responses]
    batches = [_padded(rows[start:start + batch_size], tokenizer.pad_token_id)
               for start in range(0, len(rows), batch_size)]
    return Samples([tokenizer.decode(response, skip_special_tokens=True) for _, response in rows],
                   [i for i, responses in enumerate(tokens) for _ in responses],
                   np.array([len(response) for _, response in rows], dtype=np.int64), batches)


def sequence_log_probs(model: Any, input_ids: Any, attention_mask: Any, target_mask: Any) -> np.ndarray:
    """Log-probabilities of the target tokens, (sequences, positions − 1), zero off target.

    Position ids follow the attention mask, so a left-padded row is scored as if it were unpadded."""
    import torch

    device = next(model.parameters()).device  # the batches are built on the CPU; the model may be on a GPU
    input_ids, attention_mask, target_mask = (t.to(device) for t in (input_ids, attention_mask, target_mask))
    with torch.no_grad():
        positions = positions_from_mask(attention_mask)
        logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions).logits
        log_probs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        taken = log_probs.gather(-1, input_ids[:, 1:, None]).squeeze(-1)
        return (taken * target_mask[:, 1:]).cpu().numpy().astype(np.float64)


def _padded(rows: list[tuple[list[int], list[int]]], pad_id: int) -> tuple[Any, Any, Any]:
    """Left-padded (prompt + completion) ids with attention and completion masks."""
    import torch

    width = max(len(p) + len(c) for p, c in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    target = torch.zeros((len(rows), width), dtype=torch.long)
    for row, (prompt, completion) in enumerate(rows):
        sequence = prompt + completion
        ids[row, width - len(sequence):] = torch.tensor(sequence)
        attention[row, width - len(sequence):] = 1
        target[row, width - len(completion):] = 1
    return ids, attention, target


def _completion_log_probs(model: Any, rows: list[tuple[list[int], list[int]]], pad_id: int,
                          batch_size: int) -> np.ndarray:
    """Summed log-probability of each (prompt ids, completion ids) completion given its prompt."""
    sums = []
    for start in range(0, len(rows), batch_size):
        ids, attention, target = _padded(rows[start:start + batch_size], pad_id)
        sums.append(sequence_log_probs(model, ids, attention, target).sum(axis=1))
    return np.concatenate(sums) if sums else np.zeros(0)


@dataclass
class PreferencePairs:
    prompts: list[str]
    chosen: list[str]
    rejected: list[str]
    ties: int
    """Prompts whose two samples the proxy scored equal (dropped: they carry no preference)."""
    gold_agreement: float | None
    """Share of kept pairs where gold also scores the chosen response strictly higher."""


def preference_pairs(model: Any, tokenizer: Any, prompts: list[str], proxy: Scorer, gold: Scorer, *,
                     max_new_tokens: int, batch_size: int, seed: int) -> PreferencePairs:
    """Two policy samples per prompt; the proxy's favourite is chosen, the other rejected."""
    from goodhartlab.text.sampling import sample_pool

    pools = sample_pool(model, tokenizer, prompts, 2, max_new_tokens=max_new_tokens, batch_size=batch_size,
                        seed=seed)
    flat_prompts = [p for p in prompts for _ in range(2)]
    flat_responses = [r for pool in pools for r in pool]
    proxy_scores = checked_scores(proxy, flat_prompts, flat_responses, role="proxy").reshape(len(prompts), 2)
    gold_scores = checked_scores(gold, flat_prompts, flat_responses, role="gold").reshape(len(prompts), 2)
    keep = proxy_scores[:, 0] != proxy_scores[:, 1]
    first = proxy_scores[:, 0] > proxy_scores[:, 1]
    kept = np.flatnonzero(keep)
    chosen = [pools[i][0 if first[i] else 1] for i in kept]
    rejected = [pools[i][1 if first[i] else 0] for i in kept]
    gold_margin = np.where(first, gold_scores[:, 0] - gold_scores[:, 1], gold_scores[:, 1] - gold_scores[:, 0])[keep]
    return PreferencePairs([prompts[i] for i in kept], chosen, rejected, int((~keep).sum()),
                           float(np.mean(gold_margin > 0)) if kept.size else None)


class CheckpointEvaluator:
    """Measures a policy against the reference on held-out prompts.

    The reference's samples and scores are drawn once, here; every checkpoint samples the policy
    with the same seed, so successive checkpoints differ by training, not by sampling luck."""

    def __init__(self, cfg: DirectAlignmentConfig, tokenizer: Any, reference: Any, prompts: list[str],
                 proxy: Scorer, gold: Scorer, seed: int) -> None:
        self.cfg, self.tokenizer, self.reference, self.prompts = cfg, tokenizer, reference, prompts
        self.proxy, self.gold = proxy, gold
        self.policy_seed = seed + 2_000_003
        self.grid = (len(prompts), cfg.eval_samples)
        samples = sample_responses(reference, tokenizer, prompts, cfg.eval_samples,
                                   max_new_tokens=cfg.max_new_tokens, batch_size=cfg.sample_batch_size,
                                   seed=seed + 1_000_003)
        flat = [prompts[i] for i in samples.prompt_index]
        self.reference_texts = samples.texts
        self.reference_gold = checked_scores(gold, flat, samples.texts, role="gold").reshape(self.grid)
        self.reference_record = {
            "step": 0, "epoch_fraction": 0.0, "kl": 0.0, "kl_k3": 0.0, "sqrt_kl": 0.0, "win_rate": 0.5,
            "win_rate_se": 0.0, "proxy": float(checked_scores(proxy, flat, samples.texts, role="proxy").mean()),
            "gold": float(self.reference_gold.mean()), "length": float(samples.lengths.mean()),
            "length_r2": None, "length_r2_pairs": None}
        self.pair_rows: list[tuple[list[int], list[int]]] = []
        self.pair_reference_logps = np.zeros(0)
        self.last_policy_text = ""

    def use_pairs(self, rows: list[tuple[list[int], list[int]]]) -> None:
        """Tokenized (prompt, completion) rows of training pairs for `length_r2_pairs`."""
        self.pair_rows = rows
        self.pair_reference_logps = _completion_log_probs(self.reference, rows, self.tokenizer.pad_token_id,
                                                          self.cfg.sample_batch_size)

    def measure(self, policy: Any, step: int, total_steps: int) -> dict[str, Any]:
        from goodhartlab.measure.kl import sequence_kl

        cfg = self.cfg
        was_training = policy.training
        policy.eval()
        try:
            samples = sample_responses(policy, self.tokenizer, self.prompts, cfg.eval_samples,
                                       max_new_tokens=cfg.max_new_tokens, batch_size=cfg.sample_batch_size,
                                       seed=self.policy_seed)
            kl_k1, kl_k3 = [], []
            for batch in samples.batches:
                logp_policy = sequence_log_probs(policy, *batch)
                logp_ref = sequence_log_probs(self.reference, *batch)
                mask = batch[2][:, 1:].numpy()
                kl_k1.append(sequence_kl(logp_policy, logp_ref, mask))
                kl_k3.append(sequence_kl(logp_policy, logp_ref, mask, estimator="k3"))
            pair_r2 = None
            if self.pair_rows:
                logps = _completion_log_probs(policy, self.pair_rows, self.tokenizer.pad_token_id,
                                              cfg.sample_batch_size)
                lengths = np.array([len(completion) for _, completion in self.pair_rows])
                pair_r2 = r_squared(lengths, cfg.beta * (logps - self.pair_reference_logps))
        finally:
            if was_training:
                policy.train()
        flat = [self.prompts[i] for i in samples.prompt_index]
        proxy_scores = checked_scores(self.proxy, flat, samples.texts, role="proxy")
        gold_scores = checked_scores(self.gold, flat, samples.texts, role="gold")
        rate, rate_se = win_rate(gold_scores.reshape(self.grid), self.reference_gold)
        kl = np.concatenate(kl_k1)  # per sample: log π − log π_ref of the sampled response
        self.last_policy_text = samples.texts[0]
        return {"step": step, "epoch_fraction": step / total_steps, "kl": float(kl.mean()),
                "kl_k3": float(np.concatenate(kl_k3).mean()), "sqrt_kl": math.sqrt(max(float(kl.mean()), 0.0)),
                "win_rate": rate, "win_rate_se": rate_se, "proxy": float(proxy_scores.mean()),
                "gold": float(gold_scores.mean()), "length": float(samples.lengths.mean()),
                "length_r2": r_squared(samples.lengths, cfg.beta * kl), "length_r2_pairs": pair_r2}


def _say(message: str) -> None:
    print(f"[direct alignment] {message}", file=sys.stderr, flush=True)


def direct_alignment_study(cfg: DirectAlignmentConfig, seed: int) -> RunResult:
    """One (loss, β) run: proxy-labelled pairs, one epoch of TRL's DPOTrainer, checkpoints inside it."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from goodhartlab.text.models import bf16_on, load_policy, resolve_device, without_activation_checkpointing
    from goodhartlab.text.tasks import policy_prompts

    device = resolve_device(cfg.device)
    source: Task = resolve_task(cfg.task)
    proxy, gold = source.proxy(cfg.proxy), task_gold(source, cfg.gold)
    model, tokenizer = load_policy(cfg.policy)
    model.to(device)  # sampling the pairs and the reference happens before the trainer would move it
    prompts = policy_prompts(source, source.prompts(cfg.pairs + cfg.eval_prompts, seed=seed), tokenizer)
    train_prompts, eval_prompts = prompts[: cfg.pairs], prompts[cfg.pairs:]
    reference = copy.deepcopy(model).eval()
    reference.requires_grad_(False)

    _say(f"sampling 2 responses to each of {cfg.pairs} training prompts")
    pairs = preference_pairs(model, tokenizer, train_prompts, proxy, gold, max_new_tokens=cfg.max_new_tokens,
                             batch_size=cfg.sample_batch_size, seed=seed)
    planned = math.ceil(len(pairs.chosen) / cfg.train_batch_size)
    if planned < cfg.checkpoints:
        raise ValueError(f"only {len(pairs.chosen)} of {cfg.pairs} pairs remain after dropping proxy ties, "
                         f"{planned} optimizer steps at train_batch_size = {cfg.train_batch_size}: fewer than "
                         f"checkpoints = {cfg.checkpoints}; raise pairs or lower train_batch_size")
    _say(f"{len(pairs.chosen)} pairs ({pairs.ties} proxy ties dropped); sampling the reference on "
         f"{cfg.eval_prompts} held-out prompts")
    evaluator = CheckpointEvaluator(cfg, tokenizer, reference, eval_prompts, proxy, gold, seed)
    records: list[dict[str, Any]] = [evaluator.reference_record]
    steps: list[int] = []
    total_steps = 0

    class Checkpoints(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            if state.global_step in steps and state.global_step != records[-1]["step"]:
                record = evaluator.measure(model, state.global_step, total_steps)
                records.append(record)
                _say(f"checkpoint {len(records) - 1}/{cfg.checkpoints} (step {record['step']}/{total_steps}): "
                     f"√KL {record['sqrt_kl']:.3f}, gold win rate {record['win_rate']:.3f}, "
                     f"proxy {record['proxy']:.3f}, length {record['length']:.1f}")

    dataset = Dataset.from_dict({"prompt": pairs.prompts, "chosen": pairs.chosen, "rejected": pairs.rejected})
    with tempfile.TemporaryDirectory(prefix="goodhartlab-dpo-") as output_dir:
        args = DPOConfig(output_dir=output_dir, loss_type=[cfg.loss], beta=cfg.beta,
                         learning_rate=cfg.learning_rate, lr_scheduler_type="constant", num_train_epochs=1,
                         per_device_train_batch_size=cfg.train_batch_size, gradient_accumulation_steps=1,
                         use_cpu=device == "cpu", bf16=bf16_on(device), fp16=False,
                         **without_activation_checkpointing(),
                         logging_steps=max(1, planned // 16), save_strategy="no", report_to="none", seed=seed,
                         data_seed=seed, dataloader_num_workers=0)
        trainer = DPOTrainer(model=model, ref_model=reference, args=args, train_dataset=dataset,
                             processing_class=tokenizer, callbacks=[Checkpoints()])
        # the trainer drops pairs whose prompt alone fills its max_length, so count what it kept
        processed: Any = trainer.train_dataset
        total_steps = math.ceil(len(processed) / cfg.train_batch_size)
        steps += checkpoint_steps(total_steps, cfg.checkpoints)
        if cfg.r2_pairs:
            rows = processed.select(range(min(cfg.r2_pairs, len(processed))))
            evaluator.use_pairs([(row["prompt_ids"], row[side]) for row in rows
                                 for side in ("chosen_ids", "rejected_ids")])
        _say(f"training {LOSSES[cfg.loss]} with beta = {cfg.beta:g} for one epoch of {total_steps} steps; "
             f"checkpoints at steps {steps}")
        trainer.train()
        train_log = [entry for entry in trainer.state.log_history if "loss" in entry]
    if len(records) != cfg.checkpoints + 1:
        raise RuntimeError(f"expected {cfg.checkpoints} checkpoints, recorded {len(records) - 1}")

    trained = records[1:]
    best = max(trained, key=lambda r: r["win_rate"])
    summary: dict[str, Any] = {
        "config": config_dict(cfg), "proxy_scorer": f"{proxy.name} {proxy.version}",
        "gold_scorer": f"{gold.name} {gold.version}", "loss": LOSSES[cfg.loss], "beta": cfg.beta,
        "pairs_used": len(pairs.chosen), "proxy_ties_dropped": pairs.ties,
        "pair_gold_agreement": pairs.gold_agreement, "steps": total_steps,
        "final_sqrt_kl": trained[-1]["sqrt_kl"], "final_win_rate": trained[-1]["win_rate"],
        "best_win_rate": best["win_rate"], "best_step": best["step"],
        "final_length_r2": trained[-1]["length_r2"], "final_length_r2_pairs": trained[-1]["length_r2_pairs"],
        "checkpoints": records, "train_log": train_log,
        "example": {"prompt": eval_prompts[0], "reference": evaluator.reference_texts[0],
                    "policy": evaluator.last_policy_text},
        "definitions": {  # a mapping, so the report's run table does not print it on every row
            "step 0": "the reference itself: KL 0 and win rate 1/2 by definition",
            "kl": "k1 estimate of KL(policy || reference), nats per sequence; sqrt_kl uses max(kl, 0)",
            "length_r2": "R^2 of beta * log-ratio on length (tokens) over the evaluated policy samples",
            "length_r2_pairs": "the same over chosen and rejected of the first r2_pairs training pairs",
            "pair_gold_agreement": "share of kept pairs where gold strictly prefers the proxy's choice"},
    }
    curves = {
        WIN_RATE_CURVE: CurvePoints([r["sqrt_kl"] for r in records], [r["proxy"] for r in records],
                                    [r["win_rate"] for r in records], "sqrt_kl"),
        KL_CURVE: CurvePoints([max(r["kl"], 0.0) for r in records], [r["proxy"] for r in records],
                              [r["gold"] for r in records], "kl"),
    }
    return RunResult(curves, summary)
