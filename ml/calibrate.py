"""Calibration and operating points: Platt scaling, the threshold for the target sensitivity, exam levels.

The figures come from out-of-fold predictions (ml.cv) or a validation split (ml.train.fit); per source kind
(film / digital) the calibration, exam model and nested-CV thresholds are fitted by ml.operating.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ml import metrics
from ml.config import ModelConfig
from ml.data import Example, patient_folds
from ml.exam import ExamModel, fit_exam_model, level_predictions
from ml.operating import fit_sources
from ml.report import cross_fitted, report


def operating_point(
    labels: Sequence[int],
    logits: np.ndarray,
    groups: Sequence[str],
    config: ModelConfig,
    calibration: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """Calibration, threshold at the target sensitivity and the metrics they give on these predictions."""
    y = np.asarray(labels)
    a, b = calibration or metrics.fit_platt(logits, y, fit_bias=config.calibration == "platt")
    probs = metrics.calibrate(logits, a, b)
    threshold = metrics.threshold_for_sensitivity(y, probs, config.target_sensitivity)
    sens, spec = metrics.sensitivity_specificity(y, probs, threshold)
    low, high = metrics.bootstrap_auc_ci(y, probs, groups)
    return {
        "calibration": (a, b),
        "threshold": threshold,
        "metrics": {
            "n": int(y.size),
            "n_abnormal": int(y.sum()),
            "auc": metrics.roc_auc(y, logits),
            "auc_ci_low": low,
            "auc_ci_high": high,
            "sensitivity": sens,
            "specificity": spec,
            "ece": metrics.expected_calibration_error(y, probs, config.ece_bins),
        },
    }


def exam_levels(examples: Sequence[Example], logits: np.ndarray, config: ModelConfig) -> dict[str, Any]:
    """Fit the exam model (ml.exam) on these logits and report breast- and exam-level metrics at `threshold`.

    The returned dict holds the model ("exam_model") and, per level, the metrics of
    its probabilities on the same examples (optimistic by the few parameters fitted:
    train_with_cv reports cross-fitted figures as well).
    """
    exam_ids = [ex.exam for ex in examples]
    lats = [ex.laterality for ex in examples]
    labels = [ex.label for ex in examples]
    model = fit_exam_model(logits, exam_ids, lats, labels)
    return {"exam_model": model.to_dict(), "levels": _level_metrics(model, examples, logits, config)}


def _level_metrics(
    model: ExamModel, examples: Sequence[Example], logits: np.ndarray, config: ModelConfig
) -> dict[str, Any]:
    levels = level_predictions(
        model, logits, [ex.exam for ex in examples], [ex.laterality for ex in examples], [ex.label for ex in examples]
    )
    patient_of_exam = {ex.exam: ex.patient_id for ex in examples}
    out = {}
    for level, data in levels.items():
        y = np.asarray(data["labels"])
        if y.size == 0 or y.min() == y.max():
            continue
        keys = data["keys"]
        groups = [patient_of_exam[k[0] if isinstance(k, tuple) else k] for k in keys]
        low, high = metrics.bootstrap_auc_ci(y, data["probabilities"], groups)
        out[level] = {
            "n": int(y.size),
            "n_abnormal": int(y.sum()),
            "auc": metrics.roc_auc(y, data["probabilities"]),
            "auc_ci_low": low,
            "auc_ci_high": high,
            "ece": metrics.expected_calibration_error(y, data["probabilities"], config.ece_bins),
        }
    return out


def sources_on_split(val: Sequence[Example], logits: np.ndarray, config: ModelConfig, seed: int) -> dict:
    """Per-source calibration, exam models and nested thresholds on a validation split (3 folds by woman inside
    it); {} where the split is too small to fit them (a source kind needs both classes in every part)."""
    try:
        folds = patient_folds(val, 3, seed)
        platt = config.calibration == "platt"
        return fit_sources(val, logits, folds, config.target_sensitivity, platt, config.ece_bins)
    except (ValueError, ZeroDivisionError, IndexError, KeyError):
        return {}


def cv_operating_point(
    examples: Sequence[Example], oof: np.ndarray, folds: Sequence[Sequence[int]], config: ModelConfig
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Calibrations fitted on all out-of-fold logits (what the final model serves with), the threshold that
    reaches the target sensitivity on the cross-fitted breast-level probabilities, and the cross-fitted
    figures per level and source at that threshold (no example scored by a calibration it helped fit)."""
    y = np.array([ex.label for ex in examples])
    a, b = metrics.fit_platt(oof, y, fit_bias=config.calibration == "platt")
    exam_model = fit_exam_model(oof, [ex.exam for ex in examples], [ex.laterality for ex in examples], y.tolist())
    _, rows = cross_fitted(examples, oof, folds, fit_bias=config.calibration == "platt")
    breast = rows["breast"]
    threshold = metrics.threshold_for_sensitivity(breast["labels"], breast["probabilities"], config.target_sensitivity)
    figures = report(rows, threshold, config.ece_bins)
    image_all = figures["image"]["all"]
    op = {
        "calibration": (a, b),
        "threshold": threshold,
        "exam_model": exam_model.to_dict(),
        "metrics": {
            "auc": image_all.get("auc"),
            "sensitivity": figures["breast"]["all"].get("sensitivity"),
            "specificity": figures["breast"]["all"].get("specificity"),
        },
    }
    return op, {
        "levels": figures,
        "auc": image_all.get("auc"),
        "auc_ci_low": image_all.get("auc_ci_low"),
        "auc_ci_high": image_all.get("auc_ci_high"),
        "sensitivity": op["metrics"]["sensitivity"],
        "specificity": op["metrics"]["specificity"],
        "ece": image_all.get("ece"),
        "n": image_all.get("n"),
        "n_abnormal": image_all.get("n_abnormal"),
    }


def operating_point_record(op: dict, config: ModelConfig, source: str) -> dict:
    """What a checkpoint says about its threshold: the target, what it reached, on which data."""
    return {
        "target_sensitivity": config.target_sensitivity,
        "sensitivity": op["metrics"]["sensitivity"],
        "specificity": op["metrics"]["specificity"],
        "source": source,
    }
