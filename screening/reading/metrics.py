"""Screening performance figures: plain Python, no Django, so every formula is checkable by hand.

Each proportion comes with its Wilson score interval: screening numbers are often small
(a handful of cancers per thousand), where a bare rate misleads and the normal
approximation gives impossible bounds.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Z95 = 1.959963984540054  # two-sided 95 %


def wilson(k: int, n: int, z: float = Z95) -> tuple[float | None, float | None]:
    """Wilson score interval of k successes in n trials; (None, None) when n is 0."""
    if n == 0:
        return None, None
    p = k / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def proportion(k: int, n: int, scale: float = 1.0) -> dict:
    """k of n as a rate (times scale: 1000 for a rate per thousand) with its 95 % Wilson interval."""
    low, high = wilson(k, n)
    return {
        "k": k,
        "n": n,
        "value": k / n * scale if n else None,
        "low": low * scale if low is not None else None,
        "high": high * scale if high is not None else None,
    }


def cohen_kappa(pairs: Sequence[tuple[bool, bool]]) -> dict:
    """Cohen's kappa of two raters' yes/no calls: (observed - chance agreement) / (1 - chance).

    None when there are no pairs, or when chance agreement is 1 (both always gave the same call).
    """
    n = len(pairs)
    if n == 0:
        return {"value": None, "n": 0, "observed": None}
    observed = sum(a == b for a, b in pairs) / n
    yes_a = sum(a for a, _ in pairs) / n
    yes_b = sum(b for _, b in pairs) / n
    chance = yes_a * yes_b + (1 - yes_a) * (1 - yes_b)
    value = None if chance == 1 else (observed - chance) / (1 - chance)
    return {"value": value, "n": n, "observed": observed}


@dataclass(frozen=True)
class Read:
    """One exam as one reader (or the programme, or the AI) called it.

    recall: the call (abnormal = recall). cancer: True when an outcome found cancer in either
    breast, False when every recorded outcome found none, None when no outcome is known.
    """

    recall: bool
    cancer: bool | None = None
    seconds: float | None = None
    ai_flag: bool | None = None


def figures(reads: Iterable[Read]) -> dict:
    """Recall rate, cancer detection rate per 1,000, PPV of recall, sensitivity, specificity, agreement
    with the AI (share and kappa) and median reading time of a set of reads."""
    reads = list(reads)
    n = len(reads)
    recalled = [r for r in reads if r.recall]
    detected = sum(1 for r in recalled if r.cancer is True)
    cancers = [r for r in reads if r.cancer is True]
    clear = [r for r in reads if r.cancer is False]
    with_ai = [r for r in reads if r.ai_flag is not None]
    seconds = [r.seconds for r in reads if r.seconds is not None]
    return {
        "exams": n,
        "recalls": len(recalled),
        "cancers": len(cancers),
        "recall_rate": proportion(len(recalled), n),
        "cancer_detection_per_1000": proportion(detected, n, scale=1000),
        "ppv_of_recall": proportion(detected, sum(1 for r in recalled if r.cancer is not None)),
        "sensitivity": proportion(detected, len(cancers)),
        "specificity": proportion(sum(1 for r in clear if not r.recall), len(clear)),
        "ai_agreement": proportion(sum(1 for r in with_ai if r.recall == r.ai_flag), len(with_ai)),
        "ai_kappa": cohen_kappa([(r.recall, r.ai_flag) for r in with_ai]),
        "median_reading_seconds": statistics.median(seconds) if seconds else None,
    }
