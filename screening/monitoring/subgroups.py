"""Performance of a model version by subgroup, with confidence intervals. Plain Python, checkable by hand.

Each exam the version scored is one case: its exam score, its flag at the operating point,
and its truth (cancer in either breast by the outcomes where any is recorded, else the
readers' final decision: recall = positive). AUC with a bootstrap CI over women (ml.metrics);
sensitivity, specificity and recall rate with Wilson intervals (screening.reading.metrics):
one formula, one place.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from ml.metrics import bootstrap_auc_ci, roc_auc
from screening.reading.metrics import proportion

AGE_BANDS = ((0, 50, "under 50"), (50, 60, "50-59"), (60, 70, "60-69"), (70, 200, "70 and over"))
DIMENSIONS = ("age_band", "density", "manufacturer", "site", "round")


@dataclass(frozen=True)
class Case:
    score: float
    flag: bool
    truth: bool
    truth_source: str  # "outcome" or "reading"
    woman: str  # groups the bootstrap: a woman's exams are resampled together
    age_band: str
    density: str
    manufacturer: str
    site: str
    round: str


def age_band(age: int | None) -> str:
    if age is None:
        return "unknown"
    return next(label for low, high, label in AGE_BANDS if low <= age < high)


def figures(cases: list[Case], *, min_cases: int, n_boot: int = 1000) -> dict:
    """AUC, sensitivity, specificity (at the operating point) and recall rate of a set of cases.

    too_few: fewer than `min_cases` cancers or fewer than `min_cases` clear cases; the figures
    are still given with their (wide) intervals, but no alert is raised on them and the page
    says "too few cases".
    """
    positives = [c for c in cases if c.truth]
    negatives = [c for c in cases if not c.truth]
    auc = auc_low = auc_high = None
    if positives and negatives:
        labels = [int(c.truth) for c in cases]
        scores = [c.score for c in cases]
        auc = roc_auc(labels, scores)
        low, high = bootstrap_auc_ci(labels, scores, [c.woman for c in cases], n_boot=n_boot)
        auc_low, auc_high = (None if math.isnan(low) else low), (None if math.isnan(high) else high)
    return {
        "n": len(cases),
        "cancers": len(positives),
        "from_outcomes": sum(1 for c in cases if c.truth_source == "outcome"),
        "too_few": len(positives) < min_cases or len(negatives) < min_cases,
        "auc": {"value": auc, "low": auc_low, "high": auc_high},
        "sensitivity": proportion(sum(1 for c in positives if c.flag), len(positives)),
        "specificity": proportion(sum(1 for c in negatives if not c.flag), len(negatives)),
        "recall_rate": proportion(sum(1 for c in cases if c.flag), len(cases)),
    }


def by_subgroup(cases: Iterable[Case], *, min_cases: int, n_boot: int = 1000) -> dict:
    """{"all": figures, "groups": {dimension: {value: figures}}}."""
    cases = list(cases)
    groups: dict[str, dict[str, dict]] = {}
    for dimension in DIMENSIONS:
        members: dict[str, list[Case]] = {}
        for case in cases:
            members.setdefault(getattr(case, dimension) or "unknown", []).append(case)
        groups[dimension] = {
            value: figures(rows, min_cases=min_cases, n_boot=n_boot) for value, rows in sorted(members.items())
        }
    return {"all": figures(cases, min_cases=min_cases, n_boot=n_boot), "groups": groups}


def sensitivity_below(result: dict, validated: float) -> bool:
    """Significantly below the validated sensitivity: the upper end of the 95 % Wilson interval is under it
    (a one-sided test at 2.5 %), and there are enough cases to say so."""
    high = result["sensitivity"]["high"]
    return not result["too_few"] and high is not None and high < validated
