"""Metrics for a binary screening model: NumPy only, checked against hand-computed values.

Convention: label 1 = abnormal; a higher score = more suspicious; an image is
called positive when score >= threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def _arrays(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype=np.int64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"{y.size} labels but {s.size} scores")
    return y, s


def _ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given their average rank."""
    order = np.argsort(values, kind="mergesort")
    sorted_vals = values[order]
    ranks = np.empty(values.size, dtype=np.float64)
    start = 0
    while start < values.size:
        end = start
        while end + 1 < values.size and sorted_vals[end + 1] == sorted_vals[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2.0 + 1.0
        start = end + 1
    return ranks


def roc_auc(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve via the Mann-Whitney U statistic (ties count 1/2).

    NaN when only one class is present.
    """
    y, s = _arrays(labels, scores)
    n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _ranks(s)
    u = ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_curve(
    labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False-positive rates, true-positive rates and the thresholds giving them (descending)."""
    y, s = _arrays(labels, scores)
    thresholds = np.concatenate([[np.inf], np.unique(s)[::-1]])
    pos, neg = max(1, int((y == 1).sum())), max(1, int((y == 0).sum()))
    tpr = np.array([((s >= t) & (y == 1)).sum() / pos for t in thresholds])
    fpr = np.array([((s >= t) & (y == 0)).sum() / neg for t in thresholds])
    return fpr, tpr, thresholds


def bootstrap_auc_ci(
    labels: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    groups: Sequence[str] | None = None,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of the AUC, resampling whole patients (groups).

    A woman's two breasts are correlated, so resampling images would make the
    interval too narrow.
    """
    y, s = _arrays(labels, scores)
    groups = np.asarray(groups if groups is not None else np.arange(y.size)).ravel()
    unique, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(unique.size)]
    rng = np.random.default_rng(seed)
    aucs = []
    for _ in range(n_boot):
        pick = rng.integers(0, unique.size, unique.size)
        idx = np.concatenate([members[g] for g in pick])
        auc = roc_auc(y[idx], s[idx])
        if not np.isnan(auc):
            aucs.append(auc)
    if not aucs:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0 * 100.0
    return float(np.percentile(aucs, tail)), float(np.percentile(aucs, 100.0 - tail))


def confusion(
    labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray, threshold: float
) -> dict[str, int]:
    """True/false positives and negatives when a score at or above `threshold` is called abnormal."""
    y, s = _arrays(labels, scores)
    called = s >= threshold
    return {
        "tp": int((called & (y == 1)).sum()),
        "fn": int((~called & (y == 1)).sum()),
        "fp": int((called & (y == 0)).sum()),
        "tn": int((~called & (y == 0)).sum()),
    }


def sensitivity_specificity(
    labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray, threshold: float
) -> tuple[float, float]:
    """Sensitivity and specificity at `threshold` (NaN for a class that is absent): the one formula."""
    c = confusion(labels, scores, threshold)
    positives, negatives = c["tp"] + c["fn"], c["tn"] + c["fp"]
    sens = c["tp"] / positives if positives else float("nan")
    spec = c["tn"] / negatives if negatives else float("nan")
    return sens, spec


def threshold_for_sensitivity(
    labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray, target: float = 0.90
) -> float:
    """The highest threshold whose sensitivity is at least `target` (best specificity there)."""
    y, s = _arrays(labels, scores)
    pos = np.sort(s[y == 1])[::-1]
    if pos.size == 0:
        raise ValueError("no abnormal examples: cannot set a sensitivity operating point")
    needed = int(np.ceil(target * pos.size - 1e-9))
    return float(pos[max(needed, 1) - 1])


def expected_calibration_error(
    labels: Sequence[int] | np.ndarray, probabilities: Sequence[float] | np.ndarray, n_bins: int = 10
) -> float:
    """Sum over equal-width probability bins of (bin share) x |mean prob - abnormal rate|."""
    y, p = _arrays(labels, probabilities)
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        inside = bins == b
        if inside.any():
            ece += inside.mean() * abs(p[inside].mean() - y[inside].mean())
    return float(ece)


def reliability_bins(
    labels: Sequence[int] | np.ndarray, probabilities: Sequence[float] | np.ndarray, n_bins: int = 10
) -> list[tuple[float, float, int]]:
    """(mean probability, observed abnormal rate, count) for each non-empty bin."""
    y, p = _arrays(labels, probabilities)
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    return [
        (float(p[bins == b].mean()), float(y[bins == b].mean()), int((bins == b).sum()))
        for b in range(n_bins)
        if (bins == b).any()
    ]


def sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(np.asarray(x, dtype=np.float64), -60, 60)))


MIN_PLATT_SLOPE = 1e-3


def _newton_platt(y: np.ndarray, z: np.ndarray, a: float, fit_bias: bool, fit_slope: bool) -> tuple[float, float]:
    b, ridge = 0.0, 1e-3
    for _ in range(100):
        p = sigmoid(a * z + b)
        w = p * (1 - p)
        grad = np.array([np.sum((p - y) * z) + ridge * (a - 1.0), np.sum(p - y) + ridge * b])
        hess = np.array([[np.sum(w * z * z) + ridge, np.sum(w * z)], [np.sum(w * z), np.sum(w) + ridge]])
        if not fit_slope:
            step = np.array([0.0, grad[1] / hess[1, 1] if fit_bias else 0.0])
        elif not fit_bias:
            step = np.array([grad[0] / hess[0, 0], 0.0])
        else:
            step = np.linalg.solve(hess, grad)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-10:
            break
    return float(a), float(b)


def fit_platt(
    logits: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray, fit_bias: bool = True
) -> tuple[float, float]:
    """Calibration p = sigmoid(a * logit + b) by Newton's method on the log loss.

    fit_bias=False is temperature scaling (a = 1 / T, b = 0). A small ridge keeps
    a separable validation set from sending `a` to infinity. The slope is kept at or above
    MIN_PLATT_SLOPE: calibration must never reverse the model's ranking (a fold whose logits happen
    to run against its labels would otherwise turn the most suspicious cell into the least).
    """
    y, z = _arrays(labels, logits)
    a, b = _newton_platt(y, z, 1.0, fit_bias, fit_slope=True)
    if a < MIN_PLATT_SLOPE:  # the logits carry no usable order here: keep their order, fit the base rate
        a, b = _newton_platt(y, z, MIN_PLATT_SLOPE, fit_bias, fit_slope=False)
    return float(a), float(b)


def calibrate(logits: Sequence[float] | np.ndarray, a: float, b: float) -> np.ndarray:
    return sigmoid(a * np.asarray(logits, dtype=np.float64) + b)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (sensible for small n and rates near 0 or 1)."""
    if n <= 0:
        return float("nan"), float("nan")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def widen_threshold(labels: Sequence[int] | np.ndarray, probs: Sequence[float] | np.ndarray, threshold: float) -> float:
    """Move a threshold from the last abnormal it must catch to midway (in logits) to the next normal below it.

    The highest threshold that reaches a target sensitivity on a validation split is
    exactly the score of one abnormal image there: an abnormal image of a new woman
    scoring a hair lower would be missed. Sensitivity and specificity on that split
    are unchanged; the margin goes to unseen women. No normal below: unchanged.
    """
    y, p = _arrays(labels, probs)
    below = p[(y == 0) & (p < threshold)]
    if below.size == 0:
        return float(threshold)

    def logit(q: float) -> float:
        q = min(max(q, 1e-9), 1 - 1e-9)
        return math.log(q / (1 - q))

    return float(sigmoid((logit(float(threshold)) + logit(float(below.max()))) / 2))
