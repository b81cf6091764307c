"""Figures of a model at every level (image, breast, exam) and per source, from image logits.

Used by cross-validation (out-of-fold logits, calibration cross-fitted so that no
example is scored by a calibration it helped fit) and by ml.evaluate (a trained
checkpoint on a labelled folder). Pure NumPy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ml import metrics
from ml.data import Example
from ml.exam import ExamModel, fit_exam_model, level_predictions

LEVELS = ("image", "breast", "exam")


def _both_breasts(examples: Sequence[Example]) -> set[str]:
    sides: dict[str, set[str]] = {}
    for ex in examples:
        sides.setdefault(ex.exam, set()).add((ex.laterality or "").upper()[:1])
    return {e for e, s in sides.items() if {"L", "R"} <= s}


def level_rows(
    examples: Sequence[Example], image_probs: np.ndarray, model: ExamModel, logits: np.ndarray
) -> dict[str, dict[str, Any]]:
    """Per level: keys, labels, probabilities, patient of each row and source of each row."""
    levels = level_predictions(
        model, logits, [ex.exam for ex in examples], [ex.laterality for ex in examples], [ex.label for ex in examples]
    )
    patient = {ex.exam: ex.patient_id for ex in examples}
    source = {ex.exam: ex.source for ex in examples}
    out = {
        "image": {
            "keys": [ex.image_id or ex.image_path for ex in examples],
            "labels": np.array([ex.label for ex in examples]),
            "probabilities": np.asarray(image_probs, dtype=np.float64),
            "patients": [ex.patient_id for ex in examples],
            "sources": [ex.source for ex in examples],
        }
    }
    for level, data in levels.items():
        exams = [k[0] if isinstance(k, tuple) else k for k in data["keys"]]
        out[level] = {
            **data,
            "patients": [patient[e] for e in exams],
            "sources": [source[e] for e in exams],
        }
    # Exams with both breasts imaged: the fair exam-level figure where a data set images some women's
    # cancer breast alone (RSNA here), since a maximum over two breasts runs higher than over one.
    both = _both_breasts(examples)
    keep = np.array([k in both for k in out["exam"]["keys"]], dtype=bool)
    out["exam_both_breasts"] = {
        "keys": [k for k, m in zip(out["exam"]["keys"], keep, strict=True) if m],
        "labels": out["exam"]["labels"][keep],
        "probabilities": out["exam"]["probabilities"][keep],
        "patients": [g for g, m in zip(out["exam"]["patients"], keep, strict=True) if m],
        "sources": [g for g, m in zip(out["exam"]["sources"], keep, strict=True) if m],
    }
    return out


def summarize(
    labels: np.ndarray, probs: np.ndarray, groups: Sequence[str], threshold: float, n_bins: int = 10
) -> dict[str, Any]:
    """AUC with a bootstrap CI by woman, sensitivity and specificity at `threshold`, ECE."""
    labels = np.asarray(labels)
    out: dict[str, Any] = {"n": int(labels.size), "n_abnormal": int(labels.sum())}
    if labels.size == 0 or labels.min() == labels.max():
        return out
    low, high = metrics.bootstrap_auc_ci(labels, probs, groups)
    sens, spec = metrics.sensitivity_specificity(labels, probs, threshold)
    out.update(
        auc=metrics.roc_auc(labels, probs),
        auc_ci_low=low,
        auc_ci_high=high,
        sensitivity=sens,
        specificity=spec,
        ece=metrics.expected_calibration_error(labels, probs, n_bins),
    )
    return out


def report(rows: dict[str, dict[str, Any]], threshold: float, n_bins: int = 10) -> dict[str, Any]:
    """{level: {"all": figures, <source>: figures}} at one probability threshold."""
    out: dict[str, Any] = {}
    for level, data in rows.items():
        sources = sorted(set(data["sources"]) - {""})
        parts = {"all": np.ones(len(data["labels"]), bool)}
        if len(sources) > 1 or (sources and "" not in data["sources"]):
            parts.update({s: np.array([x == s for x in data["sources"]]) for s in sources})
        out[level] = {
            name: summarize(
                data["labels"][mask],
                data["probabilities"][mask],
                [g for g, m in zip(data["patients"], mask, strict=True) if m],
                threshold,
                n_bins,
            )
            for name, mask in parts.items()
        }
    return out


def cross_fitted(
    examples: Sequence[Example],
    oof_logits: np.ndarray,
    folds: Sequence[Sequence[int]],
    fit_bias: bool = True,
) -> tuple[np.ndarray, dict[str, dict[str, Any]]]:
    """Image probabilities and level rows where each fold is calibrated (Platt, exam model) on the others."""
    image_probs = np.zeros(len(examples))
    per_fold: list[dict[str, dict[str, Any]]] = []
    for held in folds:
        held = np.asarray(held, dtype=np.int64)
        rest = np.setdiff1d(np.arange(len(examples)), held)
        rest_ex = [examples[i] for i in rest]
        y_rest = np.array([ex.label for ex in rest_ex])
        a, b = metrics.fit_platt(oof_logits[rest], y_rest, fit_bias=fit_bias)
        image_probs[held] = metrics.calibrate(oof_logits[held], a, b)
        model = fit_exam_model(
            oof_logits[rest], [ex.exam for ex in rest_ex], [ex.laterality for ex in rest_ex], y_rest.tolist()
        )
        held_ex = [examples[i] for i in held]
        per_fold.append(level_rows(held_ex, image_probs[held], model, oof_logits[held]))
    merged: dict[str, dict[str, Any]] = {}
    for level in (*LEVELS, "exam_both_breasts"):
        parts = [f[level] for f in per_fold]
        merged[level] = {
            "keys": [k for p in parts for k in p["keys"]],
            "labels": np.concatenate([p["labels"] for p in parts]),
            "probabilities": np.concatenate([p["probabilities"] for p in parts]),
            "patients": [g for p in parts for g in p["patients"]],
            "sources": [s for p in parts for s in p["sources"]],
        }
    return image_probs, merged


def pointing_game(hits: Sequence[bool | None]) -> dict[str, Any]:
    """Share of abnormal images with a position whose strongest region lies on a marked finding."""
    scored = [bool(h) for h in hits if h is not None]
    n = len(scored)
    k = sum(scored)
    low, high = metrics.wilson_interval(k, n) if n else (float("nan"), float("nan"))
    return {"n": n, "hits": k, "rate": k / n if n else float("nan"), "ci_low": low, "ci_high": high}
