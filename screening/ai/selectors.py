"""Reads for the model registry page and its API: versions, the trade-off of an operating point, waiting labels.

Nothing here writes. The exam score is ml.scoring's (the version's exam model) and sensitivity/specificity are
ml.metrics', the same formulas the predictions and the locked-set scoring use.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.utils import timezone

from ml import metrics as ml_metrics
from ml.scoring import score_exam
from screening.ai.labels import collect_labels, counts, has_new_labels, snapshot
from screening.models import ModelVersion, Prediction, Review


def registry_versions():
    return ModelVersion.objects.order_by("-created", "-pk").prefetch_related("training_runs")


def recent_exam_scores(version: ModelVersion, days: int | None = None) -> list[float]:
    """Exam scores this version gave to studies received in the last `days` days (its images only)."""
    days = days or int(getattr(settings, "PORTAL_RECALL_WINDOW_DAYS", 90))
    since = timezone.now() - timedelta(days=days)
    rows = Prediction.objects.filter(
        model_version=version, status=Prediction.Status.DONE, image__study__created__gte=since
    ).values_list("image__study_id", "image__laterality", "logit", "probability")
    exams: dict[int, list[tuple[str, float | None, float]]] = {}
    for study_id, laterality, logit, probability in rows:
        exams.setdefault(study_id, []).append((laterality, logit, probability))
    exam_model = (version.metrics or {}).get("exam_model")
    return [score_exam(exam_model, images)[1] for images in exams.values()]


def trade_off(version: ModelVersion, threshold: float | None = None) -> dict[str, Any]:
    """Sensitivity and specificity on the locked set and the recall rate on recent exams at a threshold."""
    threshold = version.threshold if threshold is None else float(threshold)
    locked = (version.metrics or {}).get("locked_validation") or {}
    out: dict[str, Any] = {"threshold": threshold, "sensitivity": None, "specificity": None}
    if locked.get("scores"):
        y = np.array([row[0] for row in locked["scores"]], dtype=np.int64)
        p = np.array([row[1] for row in locked["scores"]], dtype=np.float64)
        out["sensitivity"], out["specificity"] = ml_metrics.sensitivity_specificity(y, p, threshold)
    exams = recent_exam_scores(version)
    out["recent_exams"] = len(exams)
    out["recall_rate"] = float(np.mean(np.array(exams) >= threshold)) if exams else None
    return out


def labelled_counts() -> dict[str, Any]:
    """How many labels wait for the next run (by pool) and whether they differ from the last successful run."""
    labels = collect_labels()
    digest, summary = snapshot(labels)
    return {
        "train": summary["train"],
        "validation": summary["validation"],
        "unassigned": counts([lab for lab in labels if not lab.split]),
        "new_since_last_run": has_new_labels(digest),
        "reviewed_studies": Review.objects.values("study").distinct().count(),
    }


def cross_validated(version: ModelVersion) -> list[dict[str, Any]]:
    """The figures of a version's model card (patient-level cross-validation, per source kind) and the curves
    for its ROC and reliability plots: what the registry shows until the locked validation set scores it."""
    cv = (version.metrics or {}).get("cross_validation") or {}
    out = []
    for kind, entry in sorted((cv.get("sources") or {}).items()):
        figures = entry.get("figures") or {}
        out.append(
            {
                "kind": kind,
                "image": figures.get("image") or {},
                "breast": figures.get("breast") or {},
                "exam": figures.get("exam_both_breasts") or figures.get("exam") or {},
                "regions": figures.get("regions") or {},
                "thresholds": entry.get("thresholds") or {},
                "curves": entry.get("curves") or {},
            }
        )
    if not out and cv.get("levels"):  # a card from before per-source figures: its pooled and per-source AUCs
        for name, f in sorted((cv["levels"].get("image") or {}).items()):
            out.append({"kind": name, "image": f, "breast": (cv["levels"].get("breast") or {}).get(name, {})})
    return out
