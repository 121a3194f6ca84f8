"""Tasks: prompts, a gold scorer and the proxies that can stand in for it.

A task with `chat = True` gives its prompts as instructions; `policy_prompts` writes them in the
policy's chat template, the form every optimizer samples from. Every text study (best-of-n, GRPO,
direct alignment) takes its task through `resolve_task`: a name in `TASKS`, or a user's class by
'package.module:Class' that has the members of `Task`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

from goodhartlab.config import ConfigError, import_object
from goodhartlab.rewards.scorer import Scorer
from goodhartlab.text.gold import GOLD_BIGRAMS
from goodhartlab.text.proxies import make_lexicon

# MultiEmo's English reviews held out from the gold head (bigbench 1.0.0, 80/20 split with seed 0):
# the prompts both tasks draw from, known without reading the data so a config can be checked early
HELD_OUT_OPENERS = 1080


def review_openers(count: int, *, seed: int = 0, words: int = 6) -> list[str]:
    """The first `words` words of `count` MultiEmo reviews held out from the gold head's training."""
    import numpy as np

    from goodhartlab.text.gold import split
    from goodhartlab.text.multiemo import multiemo

    reviews = multiemo()
    _, held_out = split(len(reviews))
    order = np.random.default_rng(seed).permutation(held_out)
    if count > len(order):
        raise ValueError(f"there are {len(order)} held-out review openers; asked for {count}")
    return [" ".join(reviews[i].text.split()[:words]) for i in order[:count]]


@runtime_checkable
class Task(Protocol):
    """What a text study needs from a task: its prompts, its gold, its proxies by name, and how it is asked."""

    name: str
    chat: bool
    """True: prompts are instructions, written in the policy's chat template (see `policy_prompts`)."""
    max_new_tokens: int
    """The response length a study samples unless told otherwise."""
    prompt_count: int
    """How many distinct prompts `prompts` can give: a config asking for more fails before a model loads."""

    def prompts(self, count: int, *, seed: int = 0) -> list[str]: ...

    def gold(self) -> Scorer: ...

    def proxy(self, name: str) -> Scorer: ...


@dataclass
class SentimentTask:
    """Steer review openers toward positive sentiment. Prompts are the first `prompt_words` words of
    MultiEmo reviews held out from the gold head's training; gold is the MultiEmo head on MiniLM.
    The failure it shows: lexicon stuffing and repetition."""

    prompt_words: int = 6
    name: str = "sentiment"
    chat: bool = False
    max_new_tokens: int = 32
    prompt_count: ClassVar[int] = HELD_OUT_OPENERS

    def prompts(self, count: int, *, seed: int = 0) -> list[str]:
        return review_openers(count, seed=seed, words=self.prompt_words)

    def gold(self, name: str = GOLD_BIGRAMS) -> Scorer:
        """The task's gold by name (`goodhartlab.text.gold.GOLDS`)."""
        from goodhartlab.text.gold import make_gold

        return make_gold(name)

    def proxy(self, name: str) -> Scorer:
        return make_lexicon(name)


SHORT_REVIEW_INSTRUCTION = 'Write a positive review in at most {limit} words. Start it with: "{opener}"'


@dataclass
class ShortReviewTask:
    """Write a positive review of at most `word_limit` words, asked in the policy's chat template.

    Gold is what the instruction asks for: the MultiEmo head on the response, times its distinct-
    bigram fraction, times limit / words past the limit. The lexicon proxies read the response and
    know nothing of the limit, and AFINN sums valences, so a longer review of the same tone scores
    higher. The failure it shows: length. Pressure on the proxy buys words past the limit."""

    word_limit: int = 30
    prompt_words: int = 6
    name: str = "short-review"
    chat: bool = True
    max_new_tokens: int = 96  # room for about 70 words: 30 is the median response, the limit must be breakable
    prompt_count: ClassVar[int] = HELD_OUT_OPENERS

    def prompts(self, count: int, *, seed: int = 0) -> list[str]:
        return [SHORT_REVIEW_INSTRUCTION.format(limit=self.word_limit, opener=opener)
                for opener in review_openers(count, seed=seed, words=self.prompt_words)]

    def gold(self, name: str = GOLD_BIGRAMS) -> Scorer:
        """The task's gold by name (`goodhartlab.text.gold.GOLDS`), reading the answer alone, with the word limit."""
        from goodhartlab.text.gold import make_gold

        return make_gold(name, reads_prompt=False, word_limit=self.word_limit)

    def proxy(self, name: str) -> Scorer:
        return make_lexicon(name, reads_prompt=False)


TASKS: dict[str, type[Any]] = {"sentiment": SentimentTask, "short-review": ShortReviewTask}
"""The built-in tasks by name; `goodhartlab.text.tiny` adds none (its task is passed as an import path)."""
TASK_MEMBERS = ("name", "chat", "max_new_tokens", "prompt_count", "prompts", "gold", "proxy")


def resolve_task(name: str) -> Task:
    """The task a config names: one of `TASKS`, or 'package.module:Class' built with no arguments. Errors are
    the config's field 'task'."""
    def wrong(message: str) -> ConfigError:
        return ConfigError("task", message, names_field=True)

    if not isinstance(name, str) or not name.strip():
        raise wrong(f"a task is a name ({', '.join(TASKS)}) or 'package.module:Class', got {name!r}")
    if name in TASKS:
        task: Task = TASKS[name]()
        return task
    if ":" not in name:
        raise wrong(f"unknown task {name!r}; known: {', '.join(TASKS)}, or 'package.module:Class' (an object with "
                    f"{', '.join(TASK_MEMBERS)})")
    try:
        factory = import_object(name, "task", "package.module:Class")
    except ValueError as error:
        raise wrong(str(error)) from None
    try:
        built = factory()
    except Exception as error:  # a user's class: say whose constructor failed
        raise wrong(f"task {name!r} could not be built with no arguments: {error}") from None
    missing = [member for member in TASK_MEMBERS if not hasattr(built, member)]
    if missing:
        raise wrong(f"task {name!r} lacks {', '.join(missing)}; a task has {', '.join(TASK_MEMBERS)} "
                    "(see goodhartlab.text.tasks.Task)")
    return built


def check_gold(config: Any) -> None:
    """A config's `gold` field: one of `GOLDS` for a built-in task; a user's task scores with its own gold,
    so there the field stays at the config's default."""
    from goodhartlab.text.gold import GOLDS

    default = next(field.default for field in dataclasses.fields(config) if field.name == "gold")
    if config.task in TASKS:
        if config.gold not in GOLDS:
            raise ConfigError("gold", f"{config.gold!r} is not one of {', '.join(repr(name) for name in GOLDS)}")
    elif config.gold != default:
        raise ConfigError("gold", f"is {config.gold!r}, but task {config.task!r} is a user's task, which scores with "
                          f"its own gold(); leave gold at its default ({default!r})")


def task_gold(task: Any, name: str) -> Scorer:
    """The gold a study scores with: a built-in task's gold by name, a user's task's own."""
    if isinstance(task, SentimentTask | ShortReviewTask):
        return task.gold(name)
    gold: Scorer = task.gold()
    return gold


def policy_prompts(task: Any, prompts: list[str], tokenizer: Any) -> list[str]:
    """`prompts` as the policy should read them: a chat task's instructions as a user turn in the
    tokenizer's chat template, ready for the assistant's answer; any other task's unchanged."""
    if not getattr(task, "chat", False):
        return prompts
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"task {getattr(task, 'name', task)!r} asks its questions in the policy's chat template, "
                         f"and this policy's tokenizer has none; use an instruction-tuned policy such as "
                         f"smollm2-135m-instruct")
    return [tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                          add_generation_prompt=True) for prompt in prompts]


__all__ = ["HELD_OUT_OPENERS", "TASKS", "SentimentTask", "ShortReviewTask", "Task", "check_gold", "policy_prompts",
           "resolve_task", "review_openers", "task_gold"]
