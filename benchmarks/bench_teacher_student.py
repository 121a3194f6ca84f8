"""Teacher–student environment steps per second: the base's key/value cache kept across the episode, against a
naive loop that runs the base over the whole transcript at every step.

Baseline, measured in the same run: `TeacherStudentEnv(reuse_cache=False)`, identical in every other way
(the same episodes in lockstep, the same agent, the same seeds), which re-encodes the opening and every
token written so far at each step. Both write the same tokens (checked). An environment step is one token
in one episode; the agent samples the teacher's tokens from the base itself. Needs the SmolLM2 asset
(`goodhartlab assets --fetch smollm2-135m-instruct-gguf`) and MiniLM for the reward; `--tiny` runs the
same code on a character-level policy built from a config, with the lexicon reward.
Usage: python benchmarks/bench_teacher_student.py [--episodes 8] [--episode-tokens 32] [--threads 1] [--tiny]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Any

import numpy as np
import torch

from goodhartlab.config import parse_config
from goodhartlab.text.models import load_policy
from goodhartlab.text.teacher_student import TeacherStudentConfig, TeacherStudentEnv, turn_sentiment
from goodhartlab.text.tiny import TINY_CHAT_ALPHABET, tiny_policy


def play(env: TeacherStudentEnv, seed: int) -> tuple[float, list[list[int]]]:
    """Seconds for one batch of episodes with the agent sampling from the base, and the tokens written."""
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    env.reset()
    while not env.done:
        actions = torch.multinomial(torch.softmax(env.logits, -1), 1, generator=generator)[:, 0]
        env.step(actions)
    return time.perf_counter() - start, [record.tokens for record in env.records]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--episode-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tiny", action="store_true", help="a character-level policy built from a config")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings: dict[str, Any] = {"episode_tokens": args.episode_tokens}
    if args.tiny:
        folder = tiny_policy(tempfile.mkdtemp(), alphabet=TINY_CHAT_ALPHABET)
        settings |= {"base": str(folder), "opening": "Student: hi there\nTeacher:", "reward": "vader",
                     "gold": "lexical", "safe_reply": " what is it?"}
    cfg = parse_config(TeacherStudentConfig, settings)
    model, tokenizer = load_policy(cfg.base)
    reward = turn_sentiment(cfg.reward)
    reward.score([""], ["warm up the scorer"])
    steps = args.episodes * args.episode_tokens
    results = {}
    for label, reuse in (("naive: whole transcript each step", False), ("cache kept across the episode", True)):
        env = TeacherStudentEnv(cfg, model, tokenizer, reward, episodes=args.episodes, seed=0, reuse_cache=reuse)
        seconds, tokens = play(env, seed=1)
        results[label] = (steps / seconds, tokens)
        print(f"{label:<36} {seconds:8.1f} s  {steps:6d} steps  {steps / seconds:8.2f} steps/s", flush=True)
    (naive, naive_tokens), (cached, cached_tokens) = results.values()
    same = naive_tokens == cached_tokens
    print(f"speed-up: {cached / naive:.1f}x; same episodes: {'yes' if same else 'no'} "
          f"({np.mean([len(t) for t in cached_tokens]):.0f} tokens each after a "
          f"{len(tokenizer.encode(cfg.opening))}-token opening)")


if __name__ == "__main__":
    main()
