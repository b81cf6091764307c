"""The one write of the labels: each labelled woman goes into the training or the locked validation pool, once.

`current_snapshot` assigns the newcomers, then fingerprints the labels (`screening.ai.labels`) a run trains on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from screening.ai.labels import Label, collect_labels, snapshot, validation_fraction
from screening.models import Patient


def _order_key(patient_id: str) -> str:
    # A fixed pseudo-random order, so which women go to validation does not depend on upload order.
    return hashlib.sha256(patient_id.encode()).hexdigest()


def assign_splits(labels: Iterable[Label] | None = None) -> dict[str, int]:
    """Put each labelled woman without a pool into training or locked validation, once, stratified.

    Women are stratified by whether any of their images is abnormal; within each
    stratum a newcomer goes to validation while that keeps the stratum's validation
    share at or below PORTAL_VALIDATION_FRACTION. A woman's pool never changes.
    """
    labels = list(collect_labels() if labels is None else labels)
    fraction = validation_fraction()
    abnormal: dict[int, bool] = {}
    names: dict[int, str] = {}
    for lab in labels:
        abnormal[lab.patient_pk] = abnormal.get(lab.patient_pk, False) or bool(lab.label)
        names[lab.patient_pk] = lab.patient_id
    pools = dict(Patient.objects.filter(pk__in=list(abnormal)).values_list("pk", "split"))
    totals = {True: 0, False: 0}
    in_validation = {True: 0, False: 0}
    for pk, split in pools.items():
        if split:
            totals[abnormal[pk]] += 1
            in_validation[abnormal[pk]] += split == "validation"
    assigned = {"train": 0, "validation": 0}
    for pk in sorted((pk for pk, split in pools.items() if not split), key=lambda pk: _order_key(names[pk])):
        stratum = abnormal[pk]
        totals[stratum] += 1
        split = "validation" if in_validation[stratum] + 1 <= fraction * totals[stratum] + 1e-9 else "train"
        if Patient.objects.filter(pk=pk, split="").update(split=split):
            in_validation[stratum] += split == "validation"
            assigned[split] += 1
    return assigned


def current_snapshot() -> tuple[str, dict[str, Any], list[Label]]:
    """Assign pools to newly labelled women, then snapshot every label."""
    labels = collect_labels()
    if any(not lab.split for lab in labels):
        assign_splits(labels)
        labels = collect_labels()
    digest, summary = snapshot(labels)
    return digest, summary, labels
