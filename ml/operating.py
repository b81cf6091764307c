"""Calibration and operating points per source and per level, with thresholds chosen by nested CV.

Film (mini-MIAS) and digital (RSNA) scores run on different scales: one calibration and
one threshold for both left every film image without a finding above the threshold.
So each source kind gets its own image calibration (Platt), its own exam model (the
breast and exam calibrations, ml.exam) and its own thresholds:

- image: an image is flagged when its probability reaches it;
- breast: a breast is flagged when its probability reaches it;
- exam: flagged exactly when at least one of its breasts is (no threshold of its own,
  so a flagged breast never sits inside an unflagged exam);
- region: a suspicious region (ml.regions) is drawn only when its peak cell's calibrated
  probability reaches it. Cells share the image calibration and an image's logit is the
  mean of its top cells, so the image threshold is the region threshold: a flagged image
  always shows at least one region.

Each threshold is chosen by nested cross-validation so that its sensitivity holds
outside the folds it was fitted on: for an inner target tau, the threshold reaching
tau on all folds but one is applied to the held-out fold; the smallest tau whose pooled
held-out sensitivity reaches the target is kept, and the final threshold reaches tau
on every cross-fitted probability. Pure NumPy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ml import metrics
from ml.data import Example
from ml.exam import fit_exam_model
from ml.report import cross_fitted, summarize

FILM, DIGITAL = "film", "digital"
KINDS = (FILM, DIGITAL)
INNER_TARGETS = (0.90, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99, 1.0)


def source_kind(source: str | None) -> str:
    """'film' for digitised film (mini-MIAS, DICOM ConversionType DF/DV), 'digital' otherwise."""
    text = (source or "").strip().lower()
    return FILM if text in ("film", "mias", "mini-mias", "df", "dv") or "film" in text else DIGITAL


def nested_threshold(
    labels: np.ndarray, probs: np.ndarray, fold_of: np.ndarray, target: float
) -> tuple[float, dict[str, Any]]:
    """The threshold whose sensitivity holds on held-out folds, and the held-out figures it gave."""
    labels, probs, fold_of = np.asarray(labels), np.asarray(probs, dtype=np.float64), np.asarray(fold_of)
    chosen: dict[str, Any] = {}
    for tau in INNER_TARGETS:
        caught = positives = kept = negatives = 0
        for k in np.unique(fold_of):
            held, rest = fold_of == k, fold_of != k
            if labels[rest].sum() == 0:
                continue
            t = metrics.threshold_for_sensitivity(labels[rest], probs[rest], tau)
            caught += int(((probs >= t) & held & (labels == 1)).sum())
            positives += int((held & (labels == 1)).sum())
            kept += int(((probs < t) & held & (labels == 0)).sum())
            negatives += int((held & (labels == 0)).sum())
        sens = caught / positives if positives else float("nan")
        spec = kept / negatives if negatives else float("nan")
        chosen = {"inner_target": tau, "nested_sensitivity": sens, "nested_specificity": spec}
        if positives and sens >= target:
            break
    threshold = metrics.threshold_for_sensitivity(labels, probs, chosen["inner_target"])
    return threshold, chosen


def _subset(examples: Sequence[Example], folds: Sequence[Sequence[int]], keep: np.ndarray):
    index = {int(i): n for n, i in enumerate(np.flatnonzero(keep))}
    sub_folds = [np.array([index[int(i)] for i in f if int(i) in index], dtype=np.int64) for f in folds]
    return [examples[i] for i in np.flatnonzero(keep)], [f for f in sub_folds if f.size]


def fit_sources(
    examples: Sequence[Example],
    oof: np.ndarray,
    folds: Sequence[Sequence[int]],
    target: float = 0.90,
    fit_bias: bool = True,
    n_bins: int = 10,
) -> dict[str, dict[str, Any]]:
    """Per source kind present: calibration, exam model, thresholds and their cross-fitted figures."""
    kinds = np.array([source_kind(ex.source) for ex in examples])
    out: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        keep = kinds == kind
        if not keep.any():
            continue
        sub, sub_folds = _subset(examples, folds, keep)
        logits = np.asarray(oof)[keep]
        y = np.array([ex.label for ex in sub])
        if y.min() == y.max():
            continue
        a, b = metrics.fit_platt(logits, y, fit_bias=fit_bias)
        exam_model = fit_exam_model(logits, [ex.exam for ex in sub], [ex.laterality for ex in sub], y.tolist())
        _, rows = cross_fitted(sub, logits, sub_folds, fit_bias=fit_bias)
        fold_of_patient = {sub[i].patient_id: k for k, f in enumerate(sub_folds) for i in f}
        thresholds, nested, figures = {}, {}, {}
        for level in ("image", "breast"):
            data = rows[level]
            fold_of = np.array([fold_of_patient[p] for p in data["patients"]])
            t, info = nested_threshold(data["labels"], data["probabilities"], fold_of, target)
            thresholds[level], nested[level] = t, info
            figures[level] = summarize(data["labels"], data["probabilities"], data["patients"], t, n_bins)
        thresholds["region"] = thresholds["image"]
        figures["exam"] = exam_flag_figures(rows["breast"], thresholds["breast"], rows["exam"])
        both = set(rows["exam_both_breasts"]["keys"])
        figures["exam_both_breasts"] = exam_flag_figures(rows["breast"], thresholds["breast"], rows["exam"], both)
        curves = {
            f"roc_{lvl}": roc_points(rows[lvl]["labels"], rows[lvl]["probabilities"]) for lvl in ("image", "breast")
        }
        curves["reliability_breast"] = [
            [round(p, 4), round(r, 4), n]
            for p, r, n in metrics.reliability_bins(rows["breast"]["labels"], rows["breast"]["probabilities"], n_bins)
        ]
        out[kind] = {
            "curves": curves,
            "calibration": {"a": float(a), "b": float(b)},
            "exam_model": exam_model.to_dict(),
            "thresholds": {k: float(v) for k, v in thresholds.items()},
            "nested": nested,
            "figures": figures,
            "n_images": int(keep.sum()),
        }
    return json_safe(out)


def json_safe(value: Any) -> Any:
    """The same structure with NaN and infinities as None (JSON has neither; PostgreSQL refuses them)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def roc_points(labels: np.ndarray, probs: np.ndarray, most: int = 60) -> list[list[float]]:
    """The ROC curve as at most `most` (false-positive rate, true-positive rate) points, for a plot."""
    fpr, tpr, _ = metrics.roc_curve(labels, probs)
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(most, len(fpr))).round().astype(int))
    return [[round(float(fpr[i]), 4), round(float(tpr[i]), 4)] for i in keep]


def exam_flag_figures(
    breast: dict[str, Any], breast_threshold: float, exam: dict[str, Any], only: set[str] | None = None
) -> dict[str, Any]:
    """Exam-level figures of the served rule (flagged when any breast is) plus the exam probability's AUC."""
    flagged: dict[str, bool] = {}
    for (exam_id, _side), p in zip(breast["keys"], breast["probabilities"], strict=True):
        flagged[exam_id] = flagged.get(exam_id, False) or bool(p >= breast_threshold)
    keep = [i for i, k in enumerate(exam["keys"]) if only is None or k in only]
    labels = np.asarray(exam["labels"])[keep]
    probs = np.asarray(exam["probabilities"])[keep]
    patients = [exam["patients"][i] for i in keep]
    out = summarize(labels, probs, patients, 0.5)
    flags = np.array([flagged[exam["keys"][i]] for i in keep], dtype=bool)
    pos, neg = labels == 1, labels == 0
    out["sensitivity"] = float(flags[pos].mean()) if pos.any() else float("nan")
    out["specificity"] = float((~flags[neg]).mean()) if neg.any() else float("nan")
    out["rule"] = "flagged when any breast is"
    return out


def flags(
    thresholds: dict[str, float], image_probs: dict[Any, float], breast_probs: dict[str, float]
) -> dict[str, Any]:
    """The flags of one exam, each with its level: images, breasts, and the exam (any breast flagged)."""
    breasts = {side: bool(p is not None and p >= thresholds["breast"]) for side, p in breast_probs.items()}
    return {
        "image": {k: bool(p is not None and p >= thresholds["image"]) for k, p in image_probs.items()},
        "breast": breasts,
        "exam": any(breasts.values()),
    }
