"""Labelled text from the offline assets."""

from __future__ import annotations

import json
from dataclasses import dataclass

from goodhartlab.text.assets import asset_path

MULTIEMO_CLASSES = ("negative", "positive", "ambivalent", "neutral")


@dataclass(frozen=True)
class Review:
    text: str
    label: str


def multiemo(*, labels: tuple[str, ...] = ("negative", "positive"), fetch_if_missing: bool = True) -> list[Review]:
    """MultiEmo English reviews (hotels, medicine, products, university; Kocoń et al. 2021, CC BY 4.0) with
    the given sentiment labels, in the file's order. 8,215 reviews in all: negative 3,112, positive 2,286,
    ambivalent 1,600, neutral 1,217."""
    unknown = sorted(set(labels) - set(MULTIEMO_CLASSES))
    if unknown:
        raise ValueError(f"MultiEmo labels are {', '.join(MULTIEMO_CLASSES)}; not {', '.join(unknown)}")
    path = asset_path("multiemo-en", fetch_if_missing=fetch_if_missing)
    task = json.loads(path.read_text(encoding="utf-8"))
    reviews = []
    for example in task["examples"]:
        scores = example["target_scores"]
        label = max(scores, key=scores.get)
        if label in labels:
            reviews.append(Review(example["input"], label))
    return reviews
