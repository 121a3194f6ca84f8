"""Tasks: prompts, a gold scorer and the proxies that can stand in for it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from goodhartlab.text.scorers import PROXIES, Scorer, make_proxy


@dataclass
class SentimentTask:
    """Steer review openers toward positive sentiment. Prompts are the first `prompt_words` words of
    MultiEmo reviews held out from the gold head's training; gold is the MultiEmo head on MiniLM."""

    prompt_words: int = 6
    name: str = "sentiment"

    def prompts(self, count: int, *, seed: int = 0) -> list[str]:
        import numpy as np

        from goodhartlab.text.data import multiemo
        from goodhartlab.text.gold import split

        reviews = multiemo()
        _, held_out = split(len(reviews))
        order = np.random.default_rng(seed).permutation(held_out)
        if count > len(order):
            raise ValueError(f"the sentiment task has {len(order)} held-out prompts; asked for {count}")
        return [" ".join(reviews[i].text.split()[: self.prompt_words]) for i in order[:count]]

    def gold(self) -> Scorer:
        from goodhartlab.text.gold import SentimentGold

        return SentimentGold()

    def proxy(self, name: str) -> Scorer:
        return make_proxy(name)


TASKS: dict[str, Any] = {"sentiment": SentimentTask}


def make_task(name: str) -> SentimentTask:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
    task: SentimentTask = TASKS[name]()
    return task


__all__ = ["PROXIES", "TASKS", "SentimentTask", "make_task"]
