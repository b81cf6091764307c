from __future__ import annotations

import math

import numpy as np
import pytest

from ml import metrics


def test_auc_matches_the_hand_computed_mann_whitney_value() -> None:
    # Pairs (abnormal, normal): (0.35, 0.1) win, (0.35, 0.4) lose, (0.8, *) win twice -> 3/4.
    assert metrics.roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)


def test_auc_counts_ties_as_half() -> None:
    assert metrics.roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9]) == pytest.approx((0.5 + 1 + 1 + 1) / 4)


def test_auc_is_nan_with_one_class() -> None:
    assert math.isnan(metrics.roc_auc([1, 1], [0.2, 0.3]))


def test_ece_matches_the_hand_computed_value() -> None:
    # bin 1: mean 0.1, observed 0.5, half the data -> 0.2; bin 9: mean 0.9, observed 1.0 -> 0.05.
    assert metrics.expected_calibration_error([0, 1, 1, 1], [0.1, 0.1, 0.9, 0.9], 10) == pytest.approx(0.25)


def test_threshold_reaches_the_target_sensitivity_with_the_best_specificity() -> None:
    labels = [1, 1, 1, 1, 0, 0, 0]
    scores = [0.9, 0.8, 0.7, 0.2, 0.75, 0.3, 0.1]
    threshold = metrics.threshold_for_sensitivity(labels, scores, 0.75)
    assert threshold == pytest.approx(0.7)
    sens, spec = metrics.sensitivity_specificity(labels, scores, threshold)
    assert sens == pytest.approx(0.75) and spec == pytest.approx(2 / 3)


def test_platt_scaling_recovers_a_known_logistic_model() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, 20000)
    y = (rng.random(z.size) < metrics.sigmoid(0.5 * z - 1.0)).astype(int)
    a, b = metrics.fit_platt(z, y)
    assert a == pytest.approx(0.5, abs=0.05) and b == pytest.approx(-1.0, abs=0.08)
    t, zero = metrics.fit_platt(z, y, fit_bias=False)
    assert zero == 0.0 and 0 < t < 1


def test_bootstrap_ci_by_patient_brackets_the_auc_and_is_reproducible() -> None:
    rng = np.random.default_rng(1)
    y = np.array([0, 1] * 40)
    s = y + rng.normal(0, 1, y.size)
    groups = np.repeat(np.arange(40), 2)
    low, high = metrics.bootstrap_auc_ci(y, s, groups, n_boot=300, seed=3)
    assert low < metrics.roc_auc(y, s) < high
    assert (low, high) == metrics.bootstrap_auc_ci(y, s, groups, n_boot=300, seed=3)


def test_roc_curve_runs_from_origin_to_one() -> None:
    fpr, tpr, _ = metrics.roc_curve([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)


def test_platt_calibration_never_reverses_the_ranking() -> None:
    # Logits that run against their labels (a fold where the head learnt the wrong way round): the fit keeps
    # the order (slope at its floor) and learns the base rate, instead of a negative slope.
    rng = np.random.default_rng(0)
    labels = np.array([0] * 40 + [1] * 20)
    logits = np.where(labels == 1, -1.0, 1.0) + rng.normal(0, 0.5, labels.size)
    a, b = metrics.fit_platt(logits, labels)
    assert a >= metrics.MIN_PLATT_SLOPE
    probs = metrics.calibrate(logits, a, b)
    assert np.all(np.diff(probs[np.argsort(logits)]) >= 0)
    assert abs(probs.mean() - labels.mean()) < 0.05
