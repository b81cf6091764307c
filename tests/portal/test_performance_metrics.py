"""The performance formulas on a hand-built set, every value computed by hand (no Django)."""

from __future__ import annotations

import pytest

from screening.reading.metrics import Read, cohen_kappa, figures, wilson

# recall, cancer (None: no outcome), seconds, AI flag
HAND_BUILT = [
    Read(True, True, 30, True),
    Read(True, False, 50, True),
    Read(True, None, 40, False),
    Read(False, False, 20, False),
    Read(False, True, 10, True),  # an interval cancer the reader did not recall
    Read(False, None, None, None),
    Read(False, False, 60, False),
    Read(False, None, 35, False),
]


def test_the_figures_of_a_hand_built_set_equal_the_hand_computed_values():
    f = figures(HAND_BUILT)
    assert (f["exams"], f["recalls"], f["cancers"]) == (8, 3, 2)
    assert (f["recall_rate"]["k"], f["recall_rate"]["n"], f["recall_rate"]["value"]) == (3, 8, 0.375)
    assert f["cancer_detection_per_1000"]["value"] == 125.0  # 1 detected cancer in 8 exams
    assert (f["ppv_of_recall"]["k"], f["ppv_of_recall"]["n"]) == (1, 2)  # recalls with a known outcome
    assert (f["sensitivity"]["k"], f["sensitivity"]["n"]) == (1, 2)
    assert (f["specificity"]["k"], f["specificity"]["n"]) == (2, 3)
    assert (f["ai_agreement"]["k"], f["ai_agreement"]["n"]) == (5, 7)
    # kappa vs AI: observed 5/7; chance (3/7)^2 + (4/7)^2 = 25/49; (35/49 - 25/49) / (24/49) = 10/24
    assert f["ai_kappa"]["value"] == pytest.approx(10 / 24)
    assert f["median_reading_seconds"] == 35


def test_the_wilson_interval_matches_published_values():
    assert wilson(1, 2) == pytest.approx((0.0945, 0.9055), abs=1e-4)
    assert wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)  # never a negative bound
    assert wilson(0, 0) == (None, None)


def test_a_rate_per_thousand_scales_its_interval_too():
    f = figures([Read(True, True)] + [Read(False, False)] * 199)
    cdr = f["cancer_detection_per_1000"]
    assert cdr["value"] == 5.0 and 0 < cdr["low"] < 5 < cdr["high"] < 30


def test_cohens_kappa_of_two_readers():
    # 10 pairs: both recall 2, both not 6, disagree 2. po = 0.8; each recalls 3/10: pe = 0.09 + 0.49 = 0.58.
    pairs = [(True, True)] * 2 + [(False, False)] * 6 + [(True, False), (False, True)]
    assert cohen_kappa(pairs)["value"] == pytest.approx((0.8 - 0.58) / (1 - 0.58))
    assert cohen_kappa([(False, False)] * 3)["value"] is None  # chance agreement 1: undefined
    assert cohen_kappa([])["n"] == 0
