"""Best-of-n on a real policy: sample a pool per prompt, score proxy and gold, estimate the curves.

Pressure is the analytic best-of-n KL, log n - (n - 1)/n nats; the curves use the unbiased
estimator over the whole pool, with intervals over prompts, and the best-of-n law of Gao et al.
is fitted to gold with a bootstrap over prompts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from goodhartlab.lab.store import CurvePoints, RunResult
from goodhartlab.lab.studies import DEFAULT_NS, parse_config


@dataclass
class BestOfNConfig:
    task: str = "sentiment"
    proxy: str = "vader"
    policy: str = "smollm2-135m-instruct"
    prompts: int = 16
    pool: int = 64
    max_new_tokens: int = 32
    temperature: float = 1.0
    batch_size: int = 64

    def __post_init__(self) -> None:
        from goodhartlab.text.scorers import PROXIES
        from goodhartlab.text.tasks import TASKS

        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; known: {', '.join(TASKS)}")
        if self.proxy not in PROXIES:
            raise ValueError(f"unknown proxy {self.proxy!r}; known: {', '.join(PROXIES)}")
        if self.prompts < 1 or self.pool < 2:
            raise ValueError(f"need prompts >= 1 and pool >= 2, got {self.prompts} and {self.pool}")

    def ns(self) -> list[int]:
        return [n for n in DEFAULT_NS if n <= self.pool]


def bestofn_study(config: dict[str, Any], seed: int) -> RunResult:
    from goodhartlab.measure.bestofn import bestofn_curve
    from goodhartlab.measure.scaling import FitError, fit_law
    from goodhartlab.text.models import load_policy
    from goodhartlab.text.sampling import sample_pool
    from goodhartlab.text.tasks import make_task

    cfg = parse_config(BestOfNConfig, config)
    task = make_task(cfg.task)
    proxy, gold = task.proxy(cfg.proxy), task.gold()
    prompts = task.prompts(cfg.prompts, seed=seed)
    model, tokenizer = load_policy(cfg.policy)
    pools = sample_pool(model, tokenizer, prompts, cfg.pool, max_new_tokens=cfg.max_new_tokens,
                        temperature=cfg.temperature, batch_size=cfg.batch_size, seed=seed)
    flat_prompts = [p for p, pool in zip(prompts, pools, strict=True) for _ in pool]
    flat_responses = [r for pool in pools for r in pool]
    proxy_scores = proxy.score(flat_prompts, flat_responses).reshape(cfg.prompts, cfg.pool)
    gold_scores = gold.score(flat_prompts, flat_responses).reshape(cfg.prompts, cfg.pool)
    curve = bestofn_curve(proxy_scores, gold_scores, cfg.ns())
    summary: dict[str, Any] = {"config": asdict(cfg), "proxy_scorer": f"{proxy.name} {proxy.version}",
                               "gold_scorer": f"{gold.name} {gold.version}",
                               "gold_se": curve.gold_se.tolist(), "proxy_se": curve.proxy_se.tolist()}
    groups = np.repeat(np.arange(cfg.prompts), len(curve.ns))
    try:
        summary["fit"] = fit_law(np.tile(curve.kl, cfg.prompts), curve.gold_per_prompt.ravel(), "bon",
                                 groups=groups).to_dict()
    except FitError as error:
        summary["fit_error"] = str(error)
    best = int(np.argmax(proxy_scores[0]))
    summary["example"] = {"prompt": prompts[0], "best_of_pool_by_proxy": pools[0][best]}
    return RunResult({"best-of-n": CurvePoints(curve.kl.tolist(), curve.proxy.tolist(), curve.gold.tolist(), "kl")},
                     summary)
