"""Labels from radiologists' reads: the training and locked validation pools, and the snapshot of a run's data.

Every image of a study with a final decision is a label (the latest final review
wins: the single read, a concordant second read, or the arbitration or consensus;
the individual reads of a discordant pair label nothing; its findings become
localisation hints). Where an outcome was recorded for a breast (biopsy or
follow-up), it labels that breast's images instead of the decision. Each woman is put in the
training pool or the locked validation pool once, when first labelled, stratified
by label; the locked pool never enters training. A snapshot is the exact list of
(image, label, hints, pool) a run used, with its SHA-256.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.storage import default_storage
from django.db.models import OuterRef, Subquery

from screening.errors import PortalError
from screening.intake.demo_cases import demo_study_uids
from screening.models import Finding, Image, Outcome, Refiling, Review, TrainingRun
from screening.reading.assessment import breasts_of
from screening.reading.selectors import breast_outcomes

# A finding box covering at least this share of its image marks the breast abnormal
# without a position (diffuse calcifications): no localisation hint.
DIFFUSE_AREA_SHARE = 0.5
NOT_ENOUGH_LABELS = "needs normal and abnormal images"
EMPTY_SNAPSHOT = hashlib.sha256(b"[]").hexdigest()


def validation_fraction() -> float:
    value = float(getattr(settings, "PORTAL_VALIDATION_FRACTION", 0.2))
    if not 0.0 < value < 1.0:
        raise PortalError(f"PORTAL_VALIDATION_FRACTION must be between 0 and 1, got {value}")
    return value


@dataclass(frozen=True)
class Label:
    """One training example as the database sees it."""

    image_id: int
    patient_pk: int
    patient_id: str
    laterality: str
    label: int  # 1 abnormal, 0 normal
    findings: tuple[tuple[float, float, float], ...]  # (x, y, radius) in original pixels
    review_id: int
    split: str = ""

    def key(self) -> list:
        return [self.image_id, self.label, [list(f) for f in self.findings], self.split]


def _latest_reviews():
    """The final decision of every study that has one (the latest final version)."""
    newest = Review.objects.filter(study=OuterRef("study"), is_final=True).order_by("-version").values("version")[:1]
    return Review.objects.filter(version=Subquery(newest))


def _hint(finding: Finding, image: Image) -> tuple[float, float, float] | None:
    """A finding box as (centre x, centre y, radius); None for a box that covers most of the image."""
    if finding.width * finding.height >= DIFFUSE_AREA_SHARE * image.rows * image.columns:
        return None
    return (finding.x + finding.width / 2, finding.y + finding.height / 2, max(finding.width, finding.height) / 2)


def _sides_when_read(images: list[Image], reviews: dict[int, Review]) -> dict[int, str]:
    """Each image's laterality when its study's latest review was made: the `from_` side of its first refiling
    after the review, else its side now."""
    sides = {image.pk: image.laterality for image in images}
    study_of = {image.pk: image.study_id for image in images}
    seen: set[int] = set()
    for refiling in Refiling.objects.filter(image_id__in=list(sides)).order_by("image_id", "version"):
        review = reviews.get(study_of[refiling.image_id])
        if refiling.image_id not in seen and review is not None and refiling.created > review.created:
            sides[refiling.image_id] = refiling.from_laterality
            seen.add(refiling.image_id)
    return sides


def collect_labels() -> list[Label]:
    """Every image of a study with a submitted review, labelled by the study's latest review.

    Each image takes its breast's call (screening.assessment): recalled is abnormal, not recalled normal.
    A read from before per-breast assessment is mapped: a normal decision labels every image normal; an
    abnormal decision labels the breasts that carry a finding abnormal and the other breast normal; with no
    finding marked at all, every image of the study is abnormal. A breast's outcome
    overrides all this: malignant is abnormal, benign or no cancer after follow-up
    normal. Images the model could not read (status failed), the synthetic demonstration cases
    (screening.intake.demo_cases) and the studies held for reconciliation (issue 21) are left out.
    """
    reviews = {
        r.study_id: r
        for r in _latest_reviews().only(
            "id",
            "study_id",
            "created",
            "decision",
            "birads",
            "decision_right",
            "birads_right",
            "decision_left",
            "birads_left",
        )
    }
    outcomes = breast_outcomes(list(reviews))
    findings: dict[int, list[Finding]] = {}
    for f in Finding.objects.filter(review_id__in=[r.pk for r in reviews.values()]).order_by("id"):
        findings.setdefault(f.review_id, []).append(f)
    images = list(
        Image.objects.filter(study_id__in=list(reviews))
        .exclude(status=Image.Status.FAILED)
        .exclude(study__study_uid__in=demo_study_uids())  # synthetic demonstration cases teach the model nothing
        # a study held for reconciliation may be another woman's: no label until an admin says whose it is
        .exclude(study__demographics_conflict__resolution="")
        .select_related("study__patient")
        .order_by("id")
    )
    side_read = _sides_when_read(images, reviews)
    labels = []
    for image in images:
        review = reviews[image.study_id]
        marked = findings.get(review.pk, [])
        # The reader's calls name the breasts as the images were filed when they read them: an image an admin
        # has moved to the other side since keeps the call made about it (issue 21's refiling).
        breasts = breasts_of(review, marked_sides={side_read.get(f.image_id, f.laterality) for f in marked})
        outcome = outcomes.get((image.study_id, image.laterality))
        if outcome is not None:
            label = int(outcome == Outcome.Result.MALIGNANT)
        else:
            call = breasts.get(side_read[image.pk])
            label = int(call.recall) if call is not None else int(review.decision == Review.Decision.ABNORMAL)
        hints = tuple(h for f in marked if f.image_id == image.pk and (h := _hint(f, image)) is not None)
        patient = image.study.patient
        labels.append(
            Label(
                image_id=image.pk,
                patient_pk=patient.pk,
                patient_id=patient.patient_id,
                laterality=image.laterality,
                label=label,
                findings=hints if label else (),
                review_id=review.pk,
                split=patient.split,
            )
        )
    return labels


def counts(labels: list[Label]) -> dict[str, int]:
    return {
        "images": len(labels),
        "women": len({lab.patient_pk for lab in labels}),
        "abnormal": sum(lab.label for lab in labels),
        "normal": sum(1 - lab.label for lab in labels),
        "with_findings": sum(1 for lab in labels if lab.findings),
    }


def snapshot(labels: list[Label]) -> tuple[str, dict[str, Any]]:
    """The exact data of a run: a SHA-256 over (image, label, hints, pool) and the list itself."""
    items = sorted(lab.key() for lab in labels)
    digest = hashlib.sha256(json.dumps(items, separators=(",", ":")).encode()).hexdigest()
    summary = {
        "train": counts([lab for lab in labels if lab.split == "train"]),
        "validation": counts([lab for lab in labels if lab.split == "validation"]),
        "validation_fraction": validation_fraction(),
        # [image id, label, [[x, y, radius], ...], pool]: enough to rebuild the run's data
        "images": items,
    }
    return digest, summary


def has_new_labels(digest: str) -> bool:
    """True when there are labels and no run has used exactly this snapshot.

    A run that failed on this snapshot for another reason (a crash, a time-out) does
    not count: the nightly schedule tries the same labels again.
    """
    runs = TrainingRun.objects.filter(snapshot_hash=digest)
    return digest != EMPTY_SNAPSHOT and not (
        runs.filter(status=TrainingRun.Status.SUCCEEDED).exists()
        or runs.filter(status=TrainingRun.Status.FAILED, error__contains=NOT_ENOUGH_LABELS).exists()
    )


def need_both_classes(labels: list[Label], pool: str) -> None:
    """Refuse to train or score on a pool that lacks normal or abnormal images."""
    found = counts(labels)
    if not found["abnormal"] or not found["normal"]:
        raise PortalError(
            f"the {pool} pool {NOT_ENOUGH_LABELS}; it has {found['normal']} normal and "
            f"{found['abnormal']} abnormal from {found['women']} women: confirm more cases first",
            code="not_enough_labels",
        )


# --- labels as ml Examples ---------------------------------------------------------------------------


def cache_dir() -> Path:
    """Where training keeps downloaded originals and backbone features between runs."""
    return Path(settings.PORTAL_TRAINING_CACHE_DIR)


def feature_cache_dir() -> Path:
    """Backbone features, keyed by image content (ml.train): shared by training and locked-set scoring."""
    return cache_dir() / "features"


def _local_original(image: Image, spool: Path) -> str:
    """A local path of the image's original (downloaded once when storage is not a local disk)."""
    try:
        return default_storage.path(image.original.name)
    except NotImplementedError:
        target = spool / f"{image.sha256}{Path(image.original.name).suffix}"
        if not target.exists():
            spool.mkdir(parents=True, exist_ok=True)
            with default_storage.open(image.original.name, "rb") as src, open(target.with_suffix(".part"), "wb") as out:
                out.write(src.read())
            target.with_suffix(".part").replace(target)
        return str(target)


def to_examples(labels: list[Label]):
    """The labels as ml.data Examples (a local file per image), in the same order."""
    from ml.data import Example

    images = Image.objects.in_bulk([lab.image_id for lab in labels])
    spool = cache_dir() / "originals"
    return [
        Example(
            image_path=_local_original(images[lab.image_id], spool),
            patient_id=lab.patient_id,
            laterality=lab.laterality if lab.laterality in ("L", "R") else "",
            label=lab.label,
            findings=lab.findings,
            image_id=str(lab.image_id),
            view=images[lab.image_id].view,
            exam_id=f"study-{images[lab.image_id].study_id}",
        )
        for lab in labels
    ]
