"""`goodhartlab demo`: the synthetic Goodhart studies, stored and reported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from goodhartlab.lab.report import build_report
from goodhartlab.lab.runner import RunSpec, SweepSummary, run_sweep
from goodhartlab.lab.store import ResultsStore

SEEDS = (0, 1, 2)
TASKS = "goodhartlab.lab.studies"

STUDIES = {
    "bestofn-goodhart": (
        "Best-of-n: regressional vs extremal Goodhart",
        "Gold ~ N(0,1); the proxy adds Gaussian noise (regressional) or Student-t(1.5) noise "
        "(extremal). Best-of-n over a pool of 2,048 per prompt, 200 prompts, unbiased estimator. "
        "Regressional gold rises monotonically (e_n/√2); extremal gold peaks near n = 8 and "
        "falls back toward 0. The dotted lines are the fitted best-of-n law on all data and on "
        "early data only (n ≤ 16, shaded), whose predicted peak is checked against the later "
        "points.",
        {"log_x": False},
    ),
    "ensembles": (
        "Reward-model ensembles: independent vs shared errors",
        "Five proxies = gold + heavy-tailed error, the errors sharing a component of weight ρ. "
        "Members are normalized (median/IQR) on reference samples before aggregation. With "
        "independent errors, worst-case and uncertainty-weighted (λ = 0.5) aggregation keep "
        "gold rising while a single member and the mean over-optimize (Coste et al. 2023); "
        "with shared errors the advantage disappears (Eisenstein et al. 2023).",
        {"log_x": False},
    ),
    "transitions": (
        "Phase transitions: sharp drop, gradual decline, control",
        "Planted capability sweeps (5 seeds each): gold falls sharply between two levels, "
        "declines gradually by the same amount, or keeps rising with the proxy (control). "
        "The transition test should flag only the sharp drop. The summary row gives its "
        "detection and false-positive rates over 200 planted curves of each kind.",
        {"log_x": False, "draw_laws": False},
    ),
    "rl-tomato": (
        "Classic RL: tomato watering (reward-input tampering)",
        "Tabular Q-learning (α 0.2, γ 0.95, ε 1 → 0.05 over 60% of 1,500 episodes) on the NumPy port of "
        "the AI Safety Gridworlds' tomato watering, 3 seeds; episode returns averaged over bins of 100 "
        "episodes. The agent learns to stand on the transformer tile, where every tile looks like a "
        "watered tomato: the visible return climbs while the true return ends below the random policy's "
        "7.7 (Leike et al. 2017).",
        {"log_x": False, "draw_laws": False},
    ),
    "rl-tampering": (
        "Classic RL: reward-function and feedback tampering",
        "Rocks and diamonds (small level, 2,000 episodes): standard Q-learning flips the switch that "
        "makes rocks pay and fills the goal with rocks; learning from the reward function as it stood "
        "when the episode began (current-RF, Everitt et al. 2021) removes the incentive. Register "
        "tampering (after REALab): approval Q-learning learns to push the register; decoupled approval "
        "(Uesato et al. 2020) does not.",
        {"log_x": False, "draw_laws": False},
    ),
    "rl-capability": (
        "Classic RL: an epidemic policy trained longer (capability sweep)",
        "PPO on the SEIR epidemic analogue of Pan et al. (2022), evaluated at checkpoints of one run per "
        "seed. The proxy (infections, stage level and stage changes) ignores the political cost of "
        "raising restrictions while infections are still rare; the true reward counts it. With more "
        "training the agent learns to lock down pre-emptively: the proxy keeps improving while the "
        "true reward peaks and drops, which the transition test flags.",
        {"log_x": False, "draw_laws": False},
    ),
    "lm-bestofn": (
        "Language model: best-of-n on SmolLM2 against lexicon and learned proxies",
        "SmolLM2-135M-Instruct continues 16 openers of held-out MultiEmo reviews, 64 samples of up to 32 "
        "tokens each; best-of-n picks by the proxy, the unbiased estimator over the pool gives the curves. "
        "Gold is the MultiEmo sentiment head on MiniLM (an encoder the policy does not share) times the "
        "response's distinct-bigram fraction. The proxies: the VADER and AFINN lexicons, and Bradley–Terry "
        "reward models on the policy's own hidden states trained on 16 or 256 gold-labelled comparisons, "
        "each of its own opener (one of 256 others) and its own two samples. At this pressure (n ≤ 64, "
        "KL ≤ 3.2 nats) every proxy still raises gold; the learned proxy trained on 16 pairs raises it "
        "least (Gao et al.'s data-size effect).",
        {"log_x": False},
    ),
}
RL_TASKS = "goodhartlab.rl.sweeps"
LM_TASK = "goodhartlab.text.bestofn:bestofn_study"
# the learned proxies' comparisons are independent (two samples of one opener each), as Gao et al.'s are:
# more pairs among a few openers' samples reuse the same responses instead of adding data (docs/text.md)
LM_BESTOFN: dict[str, Any] = {"prompts": 16, "pool": 64, "max_new_tokens": 32, "train_prompts": 256, "train_pool": 2}
LM_PROXIES: dict[str, dict[str, Any]] = {"VADER lexicon": {"proxy": "vader"}, "AFINN lexicon": {"proxy": "afinn"},
              "learned, 16 pairs": {"proxy": "learned", "proxy_pairs": 16},
              "learned, 256 pairs": {"proxy": "learned", "proxy_pairs": 256}}


def demo_runs() -> list[RunSpec]:
    runs = [RunSpec("bestofn-goodhart", variant, f"{TASKS}:bestofn_goodhart", {"noise": noise}, seed)
            for variant, noise in (("regressional", "gaussian"), ("extremal", "student_t"))
            for seed in SEEDS]
    runs += [RunSpec("ensembles", aggregation, f"{TASKS}:ensemble_goodhart",
                     {"aggregation": aggregation, "shared": shared}, seed)
             for shared in (0.0, 0.5, 0.9)
             for aggregation in ("single", "mean", "worst", "uncertainty")
             for seed in SEEDS]
    runs += [RunSpec("transitions", kind, f"{TASKS}:planted_transition", {"kind": kind}, seed)
             for kind in ("sharp", "gradual", "none") for seed in range(5)]
    runs.append(RunSpec("transitions", "detector rates", f"{TASKS}:detector_rates", {}, 0))
    return runs + rl_runs() + lm_runs()


def lm_runs() -> list[RunSpec]:
    return [RunSpec("lm-bestofn", variant, LM_TASK, {**LM_BESTOFN, **proxy}, 0)
            for variant, proxy in LM_PROXIES.items()]


def rl_runs() -> list[RunSpec]:
    runs = [RunSpec("rl-tomato", "Q-learning", f"{RL_TASKS}:tabular_training",
                    {"env": "goodhartlab/TomatoWatering-v0", "episodes": 1500}, seed) for seed in SEEDS]
    for variant, learn_from in (("rocks: standard Q-learning", "proxy"),
                                ("rocks: current-RF Q-learning", "current_rf")):
        runs += [RunSpec("rl-tampering", variant, f"{RL_TASKS}:tabular_training",
                         {"env": "goodhartlab/RocksDiamondsSmall-v0", "episodes": 2000, "learn_from": learn_from},
                         seed) for seed in SEEDS]
    for variant, decoupled in (("register: approval Q-learning", False), ("register: decoupled approval", True)):
        runs += [RunSpec("rl-tampering", variant, f"{RL_TASKS}:approval_training",
                         {"decoupled": decoupled}, seed) for seed in SEEDS]
    runs += [RunSpec("rl-capability", "epidemic (political cost ignored)", f"{RL_TASKS}:capability_sweep",
                     {"env": "goodhartlab/Epidemic-v0", "axis": "training_steps",
                      "values": [0, 5000, 10000, 20000, 40000, 70000, 100000],
                      "agent": {"num_envs": 8, "n_steps": 256, "minibatch_size": 256}, "eval_episodes": 16},
                     seed) for seed in SEEDS]
    return runs


def run_demo(out_dir: str | Path, *, workers: int = 2, progress: bool = True) -> tuple[Path, SweepSummary]:
    out = Path(out_dir)
    store_path = out / "results.sqlite"
    with ResultsStore(store_path) as store:
        for study, (title, description, meta) in STUDIES.items():
            store.add_study(study, title, description, meta)
    runs = demo_runs()
    with ResultsStore(store_path) as store:
        done = store.finished_ids()
    if any(spec.study == "lm-bestofn" and spec.run_id not in done for spec in runs):
        from goodhartlab.text.bestofn import warm_cache

        warm_cache({**LM_BESTOFN, "proxy": "learned"}, 0)  # one pool for every proxy, sampled on all cores
    summary = run_sweep(runs, store_path, workers=workers, progress=progress, description="demo runs")
    return build_report(store_path, out / "report.html"), summary
