"""Research export reads: the studies an admin's filters select and what their labels say."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from django.db.models import DateField, Exists, OuterRef, QuerySet
from django.db.models.functions import Cast, Coalesce

from screening.models import Image, Outcome, Review, Study
from screening.reading.selectors import breast_outcomes
from screening.research_export.models import ResearchExport, ResearchProject

OUTCOMES = ("malignant", "benign", "no_cancer", "none")
READINGS = ("normal", "abnormal", "unread")


@dataclass(frozen=True)
class Selection:
    site: str = ""
    date_from: date | None = None
    date_to: date | None = None
    outcome: str = ""  # malignant, benign, no_cancer (either breast's latest outcome), none (no outcome), ""
    score_min: float | None = None  # the exam score
    score_max: float | None = None
    reading: str = ""  # the final decision: normal, abnormal, unread, ""

    def to_dict(self) -> dict:
        return {
            "site": self.site or None,
            "date_from": self.date_from.isoformat() if self.date_from else None,
            "date_to": self.date_to.isoformat() if self.date_to else None,
            "outcome": self.outcome or None,
            "score_min": self.score_min,
            "score_max": self.score_max,
            "reading": self.reading or None,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Selection:
        return cls(
            site=data.get("site") or "",
            date_from=date.fromisoformat(data["date_from"]) if data.get("date_from") else None,
            date_to=date.fromisoformat(data["date_to"]) if data.get("date_to") else None,
            outcome=data.get("outcome") or "",
            score_min=data.get("score_min"),
            score_max=data.get("score_max"),
            reading=data.get("reading") or "",
        )


def selected_studies(selection: Selection) -> list[int]:
    """Ids of the studies the selection keeps, oldest first."""
    studies: QuerySet[Study] = Study.objects.annotate(day=Coalesce("study_date", Cast("created", DateField())))
    if selection.site:
        studies = studies.filter(site=selection.site)
    if selection.date_from:
        studies = studies.filter(day__gte=selection.date_from)
    if selection.date_to:
        studies = studies.filter(day__lte=selection.date_to)
    if selection.score_min is not None:
        studies = studies.filter(exam_score__gte=selection.score_min)
    if selection.score_max is not None:
        studies = studies.filter(exam_score__lte=selection.score_max)
    if selection.reading == "unread":
        studies = studies.filter(~Exists(Review.objects.filter(study=OuterRef("pk"), is_final=True)))
    elif selection.reading:
        studies = studies.filter(Exists(Review.objects.filter(study=OuterRef("pk"), is_final=True)))
    ids = list(studies.order_by("day", "id").values_list("pk", flat=True))
    if selection.reading in ("normal", "abnormal"):
        finals = final_reads(ids)
        ids = [i for i in ids if finals.get(i, {}).get("decision") == selection.reading]
    if selection.outcome == "none":
        with_outcome = set(Outcome.objects.filter(study_id__in=ids).values_list("study_id", flat=True))
        ids = [i for i in ids if i not in with_outcome]
    elif selection.outcome:
        outcomes = breast_outcomes(ids)
        ids = [i for i in ids if selection.outcome in (outcomes.get((i, "L")), outcomes.get((i, "R")))]
    return ids


def final_reads(study_ids: list[int]) -> dict[int, dict]:
    """The final decision, BI-RADS and density per study (the latest final read; density from the latest read
    that gave one)."""
    result: dict[int, dict] = {}
    rows = Review.objects.filter(study_id__in=study_ids).order_by("version", "id")
    for study_id, decision, birads, density, is_final in rows.values_list(
        "study_id", "decision", "birads", "density", "is_final"
    ):
        entry = result.setdefault(study_id, {"decision": "", "birads": None, "density": ""})
        if is_final:
            entry["decision"], entry["birads"] = decision, birads
        if density:
            entry["density"] = density
    return result


def studies_with_images(study_ids: list[int]) -> list[Study]:
    by_id = Study.objects.select_related("patient").prefetch_related("images").in_bulk(study_ids)
    return [by_id[i] for i in study_ids if i in by_id]


def cancer_types(study_ids: list[int]) -> dict[tuple[int, str], str]:
    latest: dict[tuple[int, str], str] = {}
    rows = Outcome.objects.filter(study_id__in=study_ids).order_by("study_id", "laterality", "-id")
    for study_id, laterality, cancer_type in rows.values_list("study_id", "laterality", "cancer_type"):
        latest.setdefault((study_id, laterality), cancer_type)
    return latest


def exports_of(user) -> QuerySet[ResearchExport]:
    return ResearchExport.objects.filter(requested_by=user).select_related("project").order_by("-created", "-id")


def projects() -> QuerySet[ResearchProject]:
    return ResearchProject.objects.order_by("name")


def dicom_images(study: Study) -> list[Image]:
    return sorted(study.images.all(), key=lambda i: (i.laterality, i.view, i.pk))
