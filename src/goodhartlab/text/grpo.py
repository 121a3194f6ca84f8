"""GRPO on a real policy: TRL's GRPO (or RLOO) against a proxy, gold measured on the same completions.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from goodhartlab.config import ConfigError, above, at_least, config_dict, one_of
from goodhartlab.results import CurvePoints, RunResult
from goodhartlab.rewards.scorer import Scorer
from goodhartlab.text.gold import GOLD_BIGRAMS
from goodhartlab.text.models import SMOLLM2, Device, resolve_device
from goodhartlab.text.proxies import LEARNED, PROXIES
from goodhartlab.text.tasks import TASKS, Task, check_gold, resolve_task, task_gold


@dataclass
class GRPOStudyConfig:
    """One GRPO (or RLOO) run. The defaults are gentle (a small step size) and take minutes on a CPU;
    examples/text-rl.yaml holds settings that reach a hacked policy within 20 steps."""

    task: str = "sentiment"  # a built-in task, or 'package.module:Class'
    gold: str = GOLD_BIGRAMS
    """The gold by name: multiemo (the MultiEmo head x word bigrams) or multiemo-coherent (the hardened gold: x
    Gemma-3-270M coherence and token bigrams, a Gemma pass per response); a user's task scores with its own."""
    proxy: str = "vader"  # a lexicon, or "learned": the best-of-n study's Bradley–Terry reward model
    policy: str = SMOLLM2  # or a local model folder (what `save_pretrained` writes)
    trainer: Literal["grpo", "rloo"] = "grpo"
    prompts: int = 64
    steps: int = 60
    beta: float = 0.05  # KL coefficient; > 0, or there is no reference model and no KL
    learning_rate: float = 1e-5
    num_generations: int = 4  # completions per prompt (the group GRPO/RLOO compare within)
    train_batch_size: int = 8  # completions per optimizer step, a multiple of num_generations
    max_completion_length: int = 24
    temperature: float = 1.0
    gold_every: int = 5  # score gold on every gold_every-th step's batch
    # keep each run's log (runlog.jsonl, samples.jsonl, summary.json) under here, in run_folder(); default: a
    # temporary folder
    log_dir: str | None = None
    # The learned proxy's data, as in a best-of-n study (BestOfNConfig): its training samples are
    # max_completion_length tokens long, like the completions it will score.
    proxy_pairs: int = 256
    train_prompts: int = 0  # prompts (disjoint from the ones trained on) its pairs come from; 0: one per pair
    train_pool: int = 2
    # where the policy trains: cpu, cuda or auto (CUDA when torch sees one); on CUDA with bfloat16 support it trains
    # in bfloat16 mixed precision. On a Ray cluster 'cuda' asks for a GPU.
    device: Device = "auto"

    def __post_init__(self) -> None:
        resolve_task(self.task)
        if self.task in TASKS:  # a user's task knows its own proxies
            one_of(self, "proxy", PROXIES)
        check_gold(self)
        above(self, "beta", 0, why="with beta = 0 TRL loads no reference model and logs no KL, so there is no "
              "pressure to plot gold against")
        above(self, "learning_rate", 0)
        above(self, "temperature", 0)
        for name in ("prompts", "steps", "max_completion_length", "gold_every"):
            at_least(self, name, 1)
        at_least(self, "num_generations", 2, why="the group baseline needs two completions per prompt")
        if self.train_batch_size < self.num_generations or self.train_batch_size % self.num_generations:
            raise ConfigError("train_batch_size", f"({self.train_batch_size} completions per step) must be a multiple "
                              f"of num_generations ({self.num_generations})")
        if self.proxy == LEARNED:  # after the checks above, so what is left to fail is the proxy's own data
            if self.task not in TASKS:
                raise ConfigError("proxy", f"'learned' is trained on a built-in task's gold; task {self.task!r} is "
                                  f"not one ({', '.join(TASKS)})")
            self.learned_proxy_config()  # its data checked now, before a model loads

    def run_folder(self) -> Path:
        """log_dir/<trainer>-<proxy>-<digest of the settings>, with the settings in config.json: the variants
        of a study that share a log_dir keep their logs apart."""
        assert self.log_dir is not None
        settings = {key: value for key, value in config_dict(self).items() if key != "log_dir"}
        text = json.dumps(settings, sort_keys=True, indent=1)
        folder = Path(self.log_dir) / f"{self.trainer}-{self.proxy}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(text + "\n", encoding="utf-8")
        return folder

    def learned_proxy_config(self) -> Any:
        """The best-of-n config whose learned proxy this run optimizes: the same policy, prompts
        and response length, so its training prompts are disjoint from the ones RL trains on."""
        from goodhartlab.text.bestofn import BestOfNConfig

        return BestOfNConfig(task=self.task, gold=self.gold, proxy=LEARNED, policy=self.policy, prompts=self.prompts,
                             max_new_tokens=self.max_completion_length, temperature=self.temperature,
                             proxy_pairs=self.proxy_pairs, train_prompts=self.train_prompts, train_pool=self.train_pool,
                             device=self.device)


def grpo_study(cfg: GRPOStudyConfig, seed: int) -> RunResult:
    """GRPO on the task's prompts against its proxy, with gold, KL and the RL-form law."""
    task = resolve_task(cfg.task)
    prompts = grpo_prompts(task, cfg.prompts, seed, cfg.policy)
    if cfg.proxy == LEARNED:
        from goodhartlab.text.learned_proxy import learned_proxy

        proxy: Scorer = learned_proxy(cfg.learned_proxy_config(), seed)
    else:
        proxy = task.proxy(cfg.proxy)
    return train_grpo(cfg, seed, prompts=prompts, proxy=proxy, gold=task_gold(task, cfg.gold))


def grpo_prompts(task: Task, count: int, seed: int, policy: str) -> list[str]:
    """The task's `count` prompts for `seed`, in the policy's chat template when the task is a chat."""
    prompts = task.prompts(count, seed=seed)
    if task.chat:
        from goodhartlab.text.models import load_tokenizer
        from goodhartlab.text.tasks import policy_prompts

        prompts = policy_prompts(task, prompts, load_tokenizer(policy))
    return prompts


def train_grpo(cfg: GRPOStudyConfig, seed: int, *, prompts: list[str], proxy: Scorer, gold: Scorer) -> RunResult:
    """Train `cfg.policy` with TRL against `proxy`, measuring `gold` every `cfg.gold_every` steps."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    from goodhartlab.integrations.trl import KEEP_SAMPLES, LogKeys, OveroptimizationCallback, ScorerReward
    from goodhartlab.measure.runlog import RunLogError, read_run_log, reward_function_key
    from goodhartlab.text.models import bf16_on, load_policy, without_activation_checkpointing

    if not prompts:
        raise ValueError("no prompts to train on")
    device = resolve_device(cfg.device)
    # Loaded by name or folder, so TRL can rebuild the reference model from `config.name_or_path`.
    model, tokenizer = load_policy(cfg.policy)
    with tempfile.TemporaryDirectory(prefix="goodhartlab-rl-") as scratch:
        out = cfg.run_folder() / f"seed-{seed}" if cfg.log_dir else Path(scratch)
        gold_reward = ScorerReward(gold, every=cfg.gold_every, name="gold", keep=KEEP_SAMPLES)
        callback = OveroptimizationCallback(out, gold=gold_reward, seed=seed,
                                            keys=LogKeys(proxy=reward_function_key("proxy")), curve=cfg.trainer)
        settings: dict[str, Any] = dict(
            output_dir=str(Path(scratch) / "trainer"), max_steps=cfg.steps, learning_rate=cfg.learning_rate,
            beta=cfg.beta, num_generations=cfg.num_generations, per_device_train_batch_size=cfg.train_batch_size,
            max_completion_length=cfg.max_completion_length, temperature=cfg.temperature, top_k=0, top_p=1.0,
            reward_weights=[1.0, 0.0], logging_steps=1, save_strategy="no", report_to="none", seed=seed,
            data_seed=seed, disable_dropout=True, **without_activation_checkpointing(),
            use_cpu=device == "cpu", bf16=bf16_on(device))
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
        try:
            points = read_run_log(callback.run_log).curve_points()
        except RunLogError:  # no row has gold: the run is kept, without a curve
            points = CurvePoints([], [], [], "kl")
    summary = {**callback.summary, "config": config_dict(cfg), "proxy_scorer": f"{proxy.name} {proxy.version}",
               "gold_scorer": f"{gold.name} {gold.version}", "train_seconds": round(seconds, 2)}
    if len(points.pressure) < 2:  # a curve needs two KL levels; keep the run, say why it has none
        summary["curve_error"] = (f"{len(points.pressure)} gold-evaluated KL level(s); a curve needs at least 2 "
                                  "(log gold more often, or train longer)")
        return RunResult({}, summary)
    return RunResult({cfg.trainer: points}, summary)


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
