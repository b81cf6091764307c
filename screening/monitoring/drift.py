"""Drift measure: the population stability index (PSI). Plain Python + numpy, checkable by hand.

Why PSI and not a two-sample test (Kolmogorov-Smirnov, chi-square): a test's p-value answers
"is there any difference", and with a programme's thousands of images a trivial difference is
"significant" every night, while a small site's real change is not. PSI is an effect size: the
same shift gives the same value whatever the number of images, it treats categorical inputs
(manufacturer, photometric interpretation) and binned numeric ones (score, intensity) alike, and
it has a conventional reading: below 0.1 stable, 0.1-0.25 moderate, above 0.25 a major shift
(PORTAL_MONITORING_PSI_THRESHOLD, default 0.25). Its noise floor under no drift is about
(bins - 1) * (1/n_reference + 1/n_window), so numeric features use quintiles of the reference
(5 bins: about 0.08 at 100 images each) and a window needs PORTAL_MONITORING_MIN_IMAGES images.

PSI = sum over bins of (window share - reference share) * ln(window share / reference share),
with each share floored at EPSILON so a bin empty on one side counts as large, not infinite.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

EPSILON = 1e-4
QUANTILE_BINS = 5
MISSING = "(missing)"

# What is watched, and how: categorical features compare category shares, numeric ones reference quintiles.
NUMERIC = ("score", "mean_intensity", "breast_area_cm2")
CATEGORICAL = ("manufacturer", "model_name", "pixel_spacing", "bits_stored", "photometric")
FEATURES = NUMERIC + CATEGORICAL


def psi(reference: Sequence[float], window: Sequence[float]) -> float:
    """PSI of two lists of shares over the same bins."""
    total = 0.0
    for r, w in zip(reference, window, strict=True):
        r, w = max(r, EPSILON), max(w, EPSILON)
        total += (w - r) * math.log(w / r)
    return total


def category(value) -> str:
    """A categorical value as a bin label ("" and None are one 'missing' bin)."""
    if value is None or value == "":
        return MISSING
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


@dataclass(frozen=True)
class Reference:
    """A feature's reference distribution: bin labels and shares (and, numeric, the inner bin edges)."""

    labels: list[str]
    shares: list[float]
    edges: list[float] | None = None  # numeric: inner edges (quantiles of the reference)
    n: int = 0

    def to_dict(self) -> dict:
        return {"labels": self.labels, "shares": self.shares, "edges": self.edges, "n": self.n}

    @classmethod
    def from_dict(cls, data: dict) -> Reference:
        return cls(labels=data["labels"], shares=data["shares"], edges=data.get("edges"), n=data.get("n", 0))


def _numeric_labels(edges: list[float]) -> list[str]:
    bounds = ["-inf", *[f"{e:.3g}" for e in edges], "inf"]
    return [f"[{a}, {b})" for a, b in zip(bounds, bounds[1:], strict=False)] + [MISSING]


def _numeric_counts(values: Sequence, edges: list[float]) -> list[int]:
    present = np.array([v for v in values if v is not None], dtype=float)
    counts = np.bincount(np.searchsorted(np.array(edges, dtype=float), present, side="right"), minlength=len(edges) + 1)
    return [int(c) for c in counts] + [sum(1 for v in values if v is None)]


def reference_of(feature: str, values: Sequence) -> Reference:
    """The reference distribution of one feature from its reference values."""
    n = len(values)
    if feature in NUMERIC:
        present = np.array([v for v in values if v is not None], dtype=float)
        if present.size:
            quantiles = np.quantile(present, np.linspace(0, 1, QUANTILE_BINS + 1)[1:-1])
            edges = [float(e) for e in np.unique(quantiles)]
        else:
            edges = []
        counts = _numeric_counts(values, edges)
        return Reference(_numeric_labels(edges), [c / n if n else 0.0 for c in counts], edges, n)
    counts = Counter(category(v) for v in values)
    labels = sorted(counts)
    return Reference(labels, [counts[label] / n for label in labels], None, n)


@dataclass(frozen=True)
class Measure:
    value: float | None  # None: too few images in the window or the reference
    n: int
    n_reference: int
    bins: list[tuple[str, float, float]]  # label, reference share, window share

    def drifted(self, threshold: float) -> bool:
        return self.value is not None and self.value > threshold


def measure(reference: Reference, values: Sequence, *, min_n: int) -> Measure:
    """The drift of a window of values against a reference (PSI), with the shares bin by bin."""
    n = len(values)
    if reference.edges is not None:
        counts = _numeric_counts(values, reference.edges)
        labels, ref_shares = reference.labels, reference.shares
    else:
        seen = Counter(category(v) for v in values)
        labels = sorted(set(reference.labels) | set(seen))  # a new category is a bin of its own
        ref = dict(zip(reference.labels, reference.shares, strict=True))
        ref_shares = [ref.get(label, 0.0) for label in labels]
        counts = [seen.get(label, 0) for label in labels]
    shares = [c / n if n else 0.0 for c in counts]
    bins = [(label, round(r, 6), round(w, 6)) for label, r, w in zip(labels, ref_shares, shares, strict=True)]
    if n < min_n or reference.n < min_n:
        return Measure(None, n, reference.n, bins)
    return Measure(psi(ref_shares, shares), n, reference.n, bins)
