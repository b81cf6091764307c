"""From image results to breast and exam scores: the one entry point the portal calls.

A model version that carries an exam model (ml.exam, fitted with the image model
and evaluated that way) scores from the image logits: each breast from both its
views and the other breast, each level calibrated on its own. A version without
one (checkpoints from before it), or a study with an image scored without a
logit, falls back to the older rule: a breast is the mean of its views'
probabilities, the exam its most suspicious breast. Images of unknown laterality
count as a breast of their own ('U').
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ml.exam import ExamModel


def breast_scores(images: Iterable[tuple[str, float]]) -> dict[str, float]:
    """{laterality: mean probability} from (laterality, probability) pairs of one exam (the fallback rule)."""
    by_side: dict[str, list[float]] = {}
    for laterality, probability in images:
        by_side.setdefault(laterality, []).append(float(probability))
    return {side: float(np.mean(values)) for side, values in by_side.items()}


def exam_score(breasts: dict[str, float]) -> float | None:
    """The exam's score under the fallback rule: its most suspicious breast (None with no scored image)."""
    return max(breasts.values()) if breasts else None


def score_exam(
    exam_model: dict[str, Any] | None, images: Iterable[tuple[str, float | None, float]]
) -> tuple[dict[str, float], float | None]:
    """({laterality: breast probability}, exam probability) from (laterality, logit, probability) per image."""
    images = list(images)
    if exam_model and images and all(logit is not None for _, logit, _ in images):
        scores = ExamModel.from_dict(exam_model).score([(lat, float(logit)) for lat, logit, _ in images])
        breasts = {("U" if side == "U" else side): p for side, p in scores.breasts.items()}
        return breasts, scores.exam
    breasts = breast_scores((lat, p) for lat, _, p in images)
    return breasts, exam_score(breasts)
