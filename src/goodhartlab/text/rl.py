"""RL on a real policy: TRL's GRPO (or RLOO) against a proxy, gold measured on the same completions.

The proxy is the only reward with weight; gold is a weight-0 reward function scored every
`gold_every` steps, and `OveroptimizationCallback` records KL in nats per sequence, proxy and
gold at every step. Pressure is that KL; the RL-form law of Gao et al., R(d) = d(α − β log d)
with d = √KL, is fitted to the gold points. β (the KL coefficient) must be > 0: GRPO's default
of 0 loads no reference model and logs no KL, so there would be no pressure axis.

`goodhartlab.text.tiny` gives the same code path in seconds on a CPU, with no download.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from goodhartlab.lab.store import RunResult
from goodhartlab.lab.studies import parse_config
from goodhartlab.text.bestofn import LEARNED
from goodhartlab.text.scorers import Scorer

TRAINERS = ("grpo", "rloo")


def _task_factory(name: str) -> Any:
    """A task class or factory: a name in `goodhartlab.text.tasks.TASKS`, or 'package.module:Name'."""
    from goodhartlab.lab.runner import import_object
    from goodhartlab.text.tasks import TASKS

    if name in TASKS:
        return TASKS[name]
    if ":" not in name:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(TASKS)}, or 'package.module:TaskClass' "
                         "(an object with prompts(n, seed=), proxy(name) and gold())")
    return import_object(name, "task")


def make_rl_task(name: str) -> Any:
    task = _task_factory(name)()
    missing = [method for method in ("prompts", "proxy", "gold") if not callable(getattr(task, method, None))]
    if missing:
        raise ValueError(f"task {name!r} lacks {', '.join(missing)}; a task needs prompts(n, seed=), proxy(name) "
                         "and gold()")
    return task


@dataclass
class RLConfig:
    """One RL run. The defaults are gentle (a small step size) and take minutes on a CPU;
    examples/text-rl.yaml holds settings that reach a hacked policy within 20 steps."""

    task: str = "sentiment"
    proxy: str = "vader"  # a lexicon, or "learned": the best-of-n study's Bradley–Terry reward model
    policy: str = "smollm2-135m-instruct"  # or a local model folder (what `save_pretrained` writes)
    trainer: str = "grpo"
    prompts: int = 64
    steps: int = 60
    beta: float = 0.05  # KL coefficient; > 0, or there is no reference model and no KL
    learning_rate: float = 1e-5
    num_generations: int = 4  # completions per prompt (the group GRPO/RLOO compare within)
    batch_size: int = 8  # completions per optimizer step, a multiple of num_generations
    max_completion_length: int = 24
    temperature: float = 1.0
    gold_every: int = 5
    # keep each run's log (runlog.jsonl, samples.jsonl, summary.json) under here, in run_folder(); default: a
    # temporary folder
    log_dir: str | None = None
    # The learned proxy's data, as in a best-of-n study (BestOfNConfig): its training samples are
    # max_completion_length tokens long, like the completions it will score.
    proxy_pairs: int = 256
    train_prompts: int = 0  # prompts (disjoint from the ones trained on) its pairs come from; 0: one per pair
    train_pool: int = 2

    def __post_init__(self) -> None:
        from goodhartlab.text.scorers import PROXIES
        from goodhartlab.text.tasks import TASKS

        _task_factory(self.task)
        if self.proxy != LEARNED and self.task in TASKS and self.proxy not in PROXIES:
            raise ValueError(f"unknown proxy {self.proxy!r}; known: {', '.join((*PROXIES, LEARNED))}")
        if self.trainer not in TRAINERS:
            raise ValueError(f"unknown trainer {self.trainer!r}; known: {', '.join(TRAINERS)}")
        if not self.beta > 0:
            raise ValueError(f"beta must be > 0, got {self.beta}: with beta = 0 TRL loads no reference model and "
                             "logs no KL, so there is no pressure to plot gold against")
        if self.learning_rate <= 0 or self.temperature <= 0:
            raise ValueError(f"learning_rate and temperature must be > 0, got {self.learning_rate} and "
                             f"{self.temperature}")
        for name in ("prompts", "steps", "max_completion_length", "gold_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_generations < 2:
            raise ValueError(f"num_generations must be >= 2 (the group baseline needs two completions per "
                             f"prompt), got {self.num_generations}")
        if self.batch_size < self.num_generations or self.batch_size % self.num_generations:
            raise ValueError(f"batch_size ({self.batch_size} completions per step) must be a multiple of "
                             f"num_generations ({self.num_generations})")
        if self.proxy == LEARNED:  # after the checks above, so what is left to fail is the proxy's own data
            if self.task not in TASKS:
                raise ValueError(f"the learned proxy is trained on a built-in task's gold; task {self.task!r} is "
                                 f"not one ({', '.join(TASKS)})")
            self.learned_proxy_config()  # its data checked now, before a model loads

    def run_folder(self) -> Path:
        """log_dir/<trainer>-<proxy>-<digest of the settings>, with the settings in config.json: the variants
        of a study that share a log_dir keep their logs apart."""
        assert self.log_dir is not None
        settings = {key: value for key, value in asdict(self).items() if key != "log_dir"}
        text = json.dumps(settings, sort_keys=True, indent=1)
        folder = Path(self.log_dir) / f"{self.trainer}-{self.proxy}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(text + "\n", encoding="utf-8")
        return folder

    def learned_proxy_config(self) -> dict[str, Any]:
        """The best-of-n config whose learned proxy this run optimizes: the same policy, prompts
        and response length, so its training prompts are disjoint from the ones RL trains on."""
        from goodhartlab.text.bestofn import BestOfNConfig

        config = BestOfNConfig(task=self.task, proxy=LEARNED, policy=self.policy, prompts=self.prompts,
                               max_new_tokens=self.max_completion_length, temperature=self.temperature,
                               proxy_pairs=self.proxy_pairs, train_prompts=self.train_prompts,
                               train_pool=self.train_pool)
        return asdict(config)  # resolved: it names the training prompts it samples


def rl_study(config: dict[str, Any], seed: int) -> RunResult:
    """A runner task: RL on the task's prompts against its proxy, with gold, KL and the RL-form law."""
    cfg = parse_config(RLConfig, config)
    task = make_rl_task(cfg.task)
    prompts = task.prompts(cfg.prompts, seed=seed)
    if getattr(task, "chat", False):
        from goodhartlab.text.models import load_tokenizer
        from goodhartlab.text.tasks import policy_prompts

        prompts = policy_prompts(task, prompts, load_tokenizer(cfg.policy))
    if cfg.proxy == LEARNED:
        from goodhartlab.text.bestofn import learned_reward

        proxy = learned_reward(cfg.learned_proxy_config(), seed)
    else:
        proxy = task.proxy(cfg.proxy)
    return train_rl(cfg, seed, prompts=prompts, proxy=proxy, gold=task.gold())


def train_rl(cfg: RLConfig, seed: int, *, prompts: list[str], proxy: Scorer, gold: Scorer) -> RunResult:
    """Train `cfg.policy` with TRL against `proxy`, measuring `gold` every `cfg.gold_every` steps."""
    import torch
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    from goodhartlab.integrations.trl import KEEP_SAMPLES, OveroptimizationCallback, ScorerReward
    from goodhartlab.text.models import load_policy, without_activation_checkpointing

    if not prompts:
        raise ValueError("no prompts to train on")
    # Loaded by name or folder, so TRL can rebuild the reference model from `config.name_or_path`.
    model, tokenizer = load_policy(cfg.policy)
    with tempfile.TemporaryDirectory(prefix="goodhartlab-rl-") as scratch:
        out = cfg.run_folder() / f"seed-{seed}" if cfg.log_dir else Path(scratch)
        gold_reward = ScorerReward(gold, every=cfg.gold_every, name="gold", keep=KEEP_SAMPLES)
        callback = OveroptimizationCallback(out, gold=gold_reward, seed=seed, proxy_key="rewards/proxy/mean",
                                            curve=cfg.trainer)
        settings: dict[str, Any] = dict(
            output_dir=str(Path(scratch) / "trainer"), max_steps=cfg.steps, learning_rate=cfg.learning_rate,
            beta=cfg.beta, num_generations=cfg.num_generations, per_device_train_batch_size=cfg.batch_size,
            max_completion_length=cfg.max_completion_length, temperature=cfg.temperature, top_k=0, top_p=1.0,
            reward_weights=[1.0, 0.0], logging_steps=1, save_strategy="no", report_to="none", seed=seed,
            data_seed=seed, disable_dropout=True, **without_activation_checkpointing(),
            bf16=bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported()))
        common: dict[str, Any] = dict(
            model=model, processing_class=tokenizer, callbacks=[callback],
            reward_funcs=[ScorerReward(proxy, name="proxy"), gold_reward],
            train_dataset=Dataset.from_dict({"prompt": list(prompts)}))
        trainer: GRPOTrainer | RLOOTrainer
        if cfg.trainer == "grpo":
            trainer = GRPOTrainer(args=GRPOConfig(**settings), **common)
        else:
            trainer = RLOOTrainer(args=RLOOConfig(**settings), **common)
        _show_curve_in_progress_bar(trainer, callback)
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
        result = callback.run_result()
    result.summary.update(config=asdict(cfg), proxy_scorer=f"{proxy.name} {proxy.version}",
                          gold_scorer=f"{gold.name} {gold.version}", train_seconds=round(seconds, 2))
    return result


def _show_curve_in_progress_bar(trainer: Any, callback: Any) -> None:
    """Swap the trainer's progress bar for one that shows the latest KL, proxy and gold instead of
    printing every step's full metrics dict (one per step with logging_steps=1); the run log keeps
    the numbers."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class CurveProgress(ProgressCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if self.training_bar is not None and callback.rows:
                row = callback.rows[-1]
                gold = "-" if row["gold"] is None else f"{row['gold']:.3g}"
                self.training_bar.set_postfix_str(f"kl {row['kl']:.3g} proxy {row['proxy']:.3g} gold {gold}")

    callbacks = trainer.callback_handler.callbacks
    if any(isinstance(cb, ProgressCallback) for cb in callbacks):
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(CurveProgress())
    if any(isinstance(cb, PrinterCallback) for cb in callbacks):  # no bar wanted (disable_tqdm): print nothing
        trainer.remove_callback(PrinterCallback)
