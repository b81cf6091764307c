"""From image probabilities to breast and exam scores: the one place this formula lives.

A breast's score is the mean of its views' probabilities (CC and MLO show the same
tissue; averaging them halves single-view noise, as in Wu et al. 2019). The exam
score is the highest breast score, since one abnormal breast makes an abnormal
exam. Images of unknown laterality count as a breast of their own.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def breast_scores(images: Iterable[tuple[str, float]]) -> dict[str, float]:
    """{laterality: mean probability} from (laterality, probability) pairs of one exam."""
    by_side: dict[str, list[float]] = {}
    for laterality, probability in images:
        by_side.setdefault(laterality, []).append(float(probability))
    return {side: float(np.mean(values)) for side, values in by_side.items()}


def exam_score(breasts: dict[str, float]) -> float | None:
    """The exam's score: its most suspicious breast (None for an exam with no scored image)."""
    return max(breasts.values()) if breasts else None
