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


def thresholds_for(metrics: dict[str, Any] | None, default: float, kind: str | None) -> dict[str, float]:
    """A model version's thresholds (image, breast, region) for a source kind.

    `metrics["sources"]` holds each kind's fitted thresholds (ml.operating). The version's own
    `threshold` (what an admin moves) is the breast threshold of its default kind
    (`metrics["default_source_kind"]`, digital unless said otherwise) and of images whose kind is
    unknown; a version without per-source entries uses it at every level.
    """
    metrics = metrics or {}
    sources = metrics.get("sources") or {}
    default_kind = metrics.get("default_source_kind") or "digital"
    entry = sources.get(kind or default_kind) or {}
    fitted = {k: float(v) for k, v in (entry.get("thresholds") or {}).items()}
    if not fitted:
        return {"image": default, "breast": default, "region": default}
    if not kind or kind == default_kind:
        fitted["breast"] = default
    return fitted


def exam_model_for(metrics: dict[str, Any] | None, kind: str | None) -> dict[str, Any] | None:
    """The exam model of a source kind (ml.operating), else the version's default one."""
    metrics = metrics or {}
    entry = (metrics.get("sources") or {}).get(kind or "") if kind else None
    return (entry or {}).get("exam_model") or metrics.get("exam_model")


def flag_exam(breasts: dict[str, float | None], breast_threshold: float) -> tuple[dict[str, bool], bool]:
    """({side: flagged}, exam flagged): an exam is flagged exactly when at least one of its breasts is."""
    flags = {side: p is not None and p >= breast_threshold for side, p in breasts.items()}
    return flags, any(flags.values())
