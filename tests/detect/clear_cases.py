"""Hand-made twins in which the hacked run shows one detector's signal plainly from the onset on, and the healthy
twin is the same run without it: the clear cases every detector must get right."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import softmax

from goodhartlab.detect.runs import LabelledRun
from goodhartlab.measure.scaling import law_value

ROWS = 120
ONSET = 60


def clear_twins(signal: str, seed: int, *, rows: int = ROWS, onset: int = ONSET) -> tuple[LabelledRun, LabelledRun]:
    """(hacked, healthy): `signal` is one of proxy_ceiling, proxy_jump, kl_jump, length, entropy, distinct_n,
    ensemble, policy, embeddings, law."""
    rng = np.random.default_rng([seed, sum(map(ord, signal))])
    t = np.arange(rows, dtype=np.float64)
    after = np.clip(t - onset, 0, None)
    step = 10 * t
    noise = lambda scale: scale * rng.standard_normal(rows)  # noqa: E731
    kl = 0.2 * t + noise(0.02)
    proxy = 0.01 * t + noise(0.005)
    gold = 0.01 * t + noise(0.005)
    base: dict[str, Any] = {
        "length": 100 + noise(1.0), "entropy": 2.0 + noise(0.01), "distinct_n": 0.8 + noise(0.005),
        "ensemble_scores": proxy[:, None] + 0.002 * rng.standard_normal((rows, 5)),
    }
    hacked: dict[str, Any] = {"proxy": proxy.copy(), "kl": kl.copy(), "gold": gold - 0.02 * after}
    hacked["proxy"] = hacked["proxy"] + 0.002 * after  # the loophole: the proxy still rises
    changed = {key: value.copy() for key, value in base.items()}
    if signal == "proxy_ceiling":
        hacked["proxy"] = np.where(t < onset, proxy, proxy[onset]) + noise(0.002)
    elif signal == "proxy_jump":
        hacked["proxy"] = proxy + 0.05 * after
    elif signal == "kl_jump":
        hacked["kl"] = kl + 1.0 * after
    elif signal == "length":
        changed["length"] = changed["length"] * np.where(t < onset, 1.0, 1.8)
    elif signal == "entropy":
        changed["entropy"] = changed["entropy"] * np.where(t < onset, 1.0, 0.4)
    elif signal == "distinct_n":
        changed["distinct_n"] = changed["distinct_n"] * np.where(t < onset, 1.0, 0.4)
    elif signal == "ensemble":
        changed["ensemble_scores"] = changed["ensemble_scores"] + (
            0.05 * (t >= onset)[:, None] * np.array([-2.0, -1.0, 0.0, 1.0, 2.0])[None, :])
    extra_healthy: dict[str, Any] = {}
    extra_hacked: dict[str, Any] = {}
    if signal == "policy":
        trusted = softmax(rng.standard_normal((6, 4)), axis=1)
        drift = rng.standard_normal((6, 4))
        drift /= np.linalg.norm(drift)  # every healthy twin drifts as far
        extra_healthy = {"trusted_probs": [trusted] * rows,
                         "policy_probs": [softmax(np.log(trusted) + 0.002 * i * drift, axis=1) for i in range(rows)]}
        hack = 4.0 * rng.standard_normal((6, 4))
        extra_hacked = {"trusted_probs": [trusted] * rows,
                        "policy_probs": [softmax(np.log(trusted) + 0.002 * i * drift + (i >= onset) * hack, axis=1)
                                         for i in range(rows)]}
    if signal == "embeddings":
        reference = rng.standard_normal((200, 6))
        draws = rng.standard_normal((rows, 32, 6))
        shift = np.zeros(6)
        shift[0] = 6.0
        extra_healthy = {"reference_embeddings": reference, "embeddings": list(draws)}
        extra_hacked = {"reference_embeddings": reference,
                        "embeddings": [d + shift * (i >= onset) for i, d in enumerate(draws)]}
    if signal == "law":
        # gold along Gao's RL law, peaking at KL 9 (d* = 3 = exp(α/β − 1) with β = 1, α = 1 + ln 3)
        kl = 0.15 * t + noise(0.005).clip(-0.004, 0.004) + 0.005
        alpha = 1 + np.log(3.0)
        hacked = {"kl": kl, "proxy": 0.01 * t + noise(0.002),
                  "gold": law_value(np.sqrt(kl), alpha, 1.0, "rl") + noise(0.003)}
        gold = alpha * np.sqrt(kl) + noise(0.003)  # the twin's gold keeps rising (β = 0: no peak)
        proxy, hacked_kl = hacked["proxy"], kl
    hacked_kl = hacked["kl"]
    ids = f"clear-{signal}/{seed}"
    healthy_run = LabelledRun(run_id=f"{ids}/healthy", environment=f"clear-{signal}", label="healthy",
                              twin=f"{ids}/hacked", step=step, kl=kl if signal != "law" else hacked_kl, proxy=proxy,
                              gold=gold, **base, **extra_healthy)
    hacked_run = LabelledRun(run_id=f"{ids}/hacked", environment=f"clear-{signal}", label="hacked",
                             twin=f"{ids}/healthy", step=step, kl=hacked_kl, proxy=hacked["proxy"],
                             gold=hacked["gold"], **changed, **extra_hacked)
    return hacked_run.with_rule_onset(), healthy_run
