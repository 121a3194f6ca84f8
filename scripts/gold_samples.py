"""Regenerate tests/text/data/gold_samples.json: python scripts/gold_samples.py

The samples the hardened gold is tested on (tests/text/test_coherence.py), each with where it came from:
- the degenerate outputs of our own studies that docs/text.md quotes (DPO's and IPO's word salad, GRPO's
  repetition glued into one word and said word by word), as quoted;
- more of each failure from SmolLM2, made the way the studies make them: word salad is the VADER pick of
  16 samples drawn at temperature 1.5 (best-of-16 on a policy pushed off its distribution), over-length
  answers are the AFINN pick of 8 short-review answers (the short-review best-of-n study at n = 8) when it
  runs to at least 1.5 times the 30-word limit, as the study's picks do from n = 16 on (an answer just past
  the limit loses only limit / words of its gold, by design: 38 words keep 79%);
- the fluent references: SmolLM2's own answers and continuations at temperature 0.7 (within 30 words for the
  short-review task), and held-out MultiEmo reviews (first 40 words), all of them positive per the head.
Every generated sample keeps its policy, temperature, seed and selection rule.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from goodhartlab.text.gold import make_gold, split
from goodhartlab.text.models import SMOLLM2, load_policy
from goodhartlab.text.multiemo import multiemo
from goodhartlab.text.proxies import make_lexicon
from goodhartlab.text.sampling import sample_pool
from goodhartlab.text.tasks import ShortReviewTask, policy_prompts, review_openers

OUT = Path(__file__).resolve().parents[1] / "tests" / "text" / "data" / "gold_samples.json"
DOCS = "docs/text.md"
QUOTED = [  # (kind, task, prompt, response, where docs/text.md quotes it)
    ("word_salad", "sentiment", "", " great guarantee to find you wonderful wisdom.arya tommy boni beautifully cooked "
     "with excitement every delicious delicious amazing beauty love wearing", "DPO on SmolLM2, beta = 0.01, seed 0 "
     "(examples/text-dpo.yaml), end of the epoch"),
    ("word_salad", "sentiment", "", " great golden foil or smoky forged of beauty or craft myself or forge love truly "
     "self illuminating myself love for you, doctor love",
     "IPO on SmolLM2, beta = 0.05, seed 0 (examples/text-dpo.yaml)"),
    ("glued_repetition", "sentiment", "", " a beautiful and strong" + "hearted" * 16, "GRPO on SmolLM2 against the "
     "learned proxy of 1,024 pairs, seed 1 (examples/text-rl-learned.yaml); docs quote it as "
     "'strongheartedheartedhearted…' with 'hearted' sixteen times"),
    ("word_repetition", "sentiment", "", " love love love love love love", "GRPO on SmolLM2 against AFINN "
     "(examples/text-rl.yaml), from step 16"),
    ("word_repetition", "short-review", "", " ".join(["I'm happy"] * 24), "GRPO on the short-review task against "
     "AFINN (examples/text-rl-short-review.yaml), steps 14-30: 47-65 words of \"I'm happy I'm happy …\""),
]
SALAD_OPENERS, SALAD_POOL, SALAD_TEMPERATURE, SALAD_SEED = 24, 16, 1.5, 101
LONG_PROMPTS, LONG_POOL, LONG_SEED = 24, 8, 102
FLUENT_PROMPTS, FLUENT_SEED, FLUENT_TEMPERATURE = 24, 103, 0.7
HUMAN, HUMAN_WORDS = 24, 40
POSITIVE = 0.7  # the head's P(positive) a sample needs to count as positive


def main() -> None:
    import torch

    torch.set_num_threads(1)
    model, tokenizer = load_policy(SMOLLM2)
    head = make_gold("multiemo", reads_prompt=False)  # its encoder and head: the sentiment every sample must share
    head.fluency = False
    rows = [{"kind": kind, "task": task, "prompt": prompt, "response": response,
             "source": f"quoted in {DOCS}: {where}"} for kind, task, prompt, response, where in QUOTED]
    openers = review_openers(200, seed=SALAD_SEED)[-SALAD_OPENERS:]  # openers no table of the docs used
    hot = sample_pool(model, tokenizer, openers, SALAD_POOL, max_new_tokens=32, temperature=SALAD_TEMPERATURE,
                      seed=SALAD_SEED, batch_size=64)
    vader = make_lexicon("vader")
    for opener, responses in zip(openers, hot, strict=True):
        pick = responses[int(np.argmax(vader.score([opener] * len(responses), responses)))]
        rows.append({"kind": "word_salad", "task": "sentiment", "prompt": opener, "response": pick,
                     "source": f"{SMOLLM2}, temperature {SALAD_TEMPERATURE}, 32 tokens, seed {SALAD_SEED}: the VADER "
                               f"pick of {SALAD_POOL} samples"})
    task = ShortReviewTask()
    instructions = task.prompts(200, seed=LONG_SEED)[-LONG_PROMPTS:]
    answers = sample_pool(model, tokenizer, policy_prompts(task, instructions, tokenizer), LONG_POOL,
                          max_new_tokens=96, seed=LONG_SEED, batch_size=64)
    afinn = make_lexicon("afinn", reads_prompt=False)
    for instruction, responses in zip(instructions, answers, strict=True):
        pick = responses[int(np.argmax(afinn.score([instruction] * len(responses), responses)))]
        if len(pick.split()) >= 1.5 * task.word_limit:
            rows.append({"kind": "over_length", "task": "short-review", "prompt": instruction, "response": pick,
                         "source": f"{SMOLLM2}, temperature 1, 96 tokens, seed {LONG_SEED}: the AFINN pick of "
                                   f"{LONG_POOL} answers, at least 1.5 x the {task.word_limit}-word limit"})
    openers = review_openers(300, seed=FLUENT_SEED)[-FLUENT_PROMPTS:]
    continuations = sample_pool(model, tokenizer, openers, 4, max_new_tokens=32, temperature=FLUENT_TEMPERATURE,
                                seed=FLUENT_SEED, batch_size=64)
    instructions = task.prompts(300, seed=FLUENT_SEED)[-FLUENT_PROMPTS:]
    answers = sample_pool(model, tokenizer, policy_prompts(task, instructions, tokenizer), 4, max_new_tokens=96,
                          temperature=FLUENT_TEMPERATURE, seed=FLUENT_SEED, batch_size=64)
    fluent_source = f"{SMOLLM2}, temperature {FLUENT_TEMPERATURE}, seed {FLUENT_SEED}"
    for opener, responses in zip(openers, continuations, strict=True):
        rows += [{"kind": "fluent", "task": "sentiment", "prompt": opener, "response": r,
                  "source": f"{fluent_source}, 32 tokens"} for r in responses]
    for instruction, responses in zip(instructions, answers, strict=True):
        rows += [{"kind": "fluent", "task": "short-review", "prompt": instruction, "response": r,
                  "source": f"{fluent_source}, 96 tokens, within the word limit"}
                 for r in responses if len(r.split()) <= task.word_limit]
    reviews = multiemo()
    _, held_out = split(len(reviews))
    positive = [reviews[i].text for i in held_out if reviews[i].label == "positive"][-HUMAN:]
    rows += [{"kind": "fluent", "task": task_name, "prompt": "", "response": " " + " ".join(text.split()[:words]),
              "source": f"a held-out MultiEmo review (positive), first {words} words"}
             for text in positive for task_name, words in (("sentiment", HUMAN_WORDS), ("short-review", 25))]
    # every sample must read as positive to the head (the sentiment every comparison holds fixed)
    probability = head.score([r["prompt"] if r["task"] == "sentiment" else "" for r in rows],
                             [r["response"] for r in rows])
    kept = [dict(row, head=round(float(p), 4)) for row, p in zip(rows, probability, strict=True) if p >= POSITIVE]
    OUT.write_text(json.dumps({"about": __doc__.strip().splitlines()[2:], "positive": POSITIVE, "samples": kept},
                              indent=1, ensure_ascii=False) + "\n")
    counts: dict[str, int] = {}
    for row in kept:
        counts[row["kind"]] = counts.get(row["kind"], 0) + 1
    print(f"wrote {OUT}: {counts}")


if __name__ == "__main__":
    main()
