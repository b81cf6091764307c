"""Performance of the readers, of each AI model version and of the programme, from the database.

The formulas live in screening.reading.metrics; this module only decides which reads count:
each reader's own screening reads (single, first or second; their latest version), the
programme's final decision per exam, and each model version's flag on the exams it scored.
Truth is the outcome per exam: cancer if either breast's outcome is malignant. Each figure block has its
breast-level twin under "breasts": every read counted as two, one per breast (screening.assessment), each
against its own breast's outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from django.db.models import DateField, Exists, OuterRef, QuerySet
from django.db.models.functions import Cast, Coalesce

from screening.intake.demo_cases import demo_study_uids
from screening.models import Finding, Review, Study
from screening.reading.assessment import SIDES, BreastCall, breasts_of
from screening.reading.metrics import Read, cohen_kappa, figures
from screening.reading.selectors import breast_outcomes

SCREENING_SLOTS = ("single", "first", "second")


@dataclass(frozen=True)
class PerformanceFilters:
    date_from: date | None = None
    date_to: date | None = None
    density: str = ""  # A, B, C, D or "" (all): the density of the exam's final (or latest) read
    site: str = ""  # a site code, or "" (the whole programme)


@dataclass(frozen=True)
class _Exam:
    """What the figures need of a study (plain rows: a programme has tens of thousands of read exams)."""

    pk: int
    exam_flag: bool | None
    model_name: str | None


@dataclass(frozen=True)
class _Reading:
    """What the figures need of a review."""

    study_id: int
    version: int
    slot: str
    is_final: bool
    decision: str
    density: str
    reading_seconds: float | None
    radiologist_id: int
    reader: str
    birads: int
    decision_right: str
    birads_right: int | None
    decision_left: str
    birads_left: int | None
    pk: int


def _studies(filters: PerformanceFilters) -> tuple[dict[int, _Exam], QuerySet]:
    """The read exams the filters keep, and the query of their ids (for the reviews' and outcomes' queries)."""
    studies = Study.objects.filter(Exists(Review.objects.filter(study=OuterRef("pk"))))
    studies = studies.exclude(study_uid__in=demo_study_uids())  # trying the demonstration cases is not screening
    if filters.date_from or filters.date_to:
        studies = studies.annotate(exam_day=Coalesce("study_date", Cast("created", DateField())))
    if filters.date_from:
        studies = studies.filter(exam_day__gte=filters.date_from)
    if filters.date_to:
        studies = studies.filter(exam_day__lte=filters.date_to)
    if filters.site:
        studies = studies.filter(site=filters.site)
    rows = studies.values_list("pk", "exam_flag", "exam_model__name")
    return {pk: _Exam(pk, flag, name) for pk, flag, name in rows}, studies.values("pk")


def _readings(study_ids: QuerySet) -> list[_Reading]:
    fields = ("study_id", "version", "slot", "is_final", "decision", "density", "reading_seconds")
    breasts = ("birads", "decision_right", "birads_right", "decision_left", "birads_left", "pk")
    rows = Review.objects.filter(study__in=study_ids).values_list(
        *fields, "radiologist_id", "radiologist__username", *breasts
    )
    return [_Reading(*row) for row in rows]


def _breast_calls(reviews: list[_Reading]) -> dict[int, dict[str, BreastCall]]:
    """Each review's call per breast (review pk -> {"R", "L"}), older reads mapped by their findings' sides."""
    older = [r.pk for r in reviews if r.birads_right is None and r.decision == Review.Decision.ABNORMAL]
    marked: dict[int, set[str]] = {}
    for review_id, side in Finding.objects.filter(review_id__in=older).values_list("review_id", "laterality"):
        marked.setdefault(review_id, set()).add(side)
    return {r.pk: breasts_of(r, marked_sides=marked.get(r.pk, ())) for r in reviews}


def _latest_per(reviews: list[_Reading], key) -> dict:
    latest: dict = {}
    for review in sorted(reviews, key=lambda r: r.version):
        latest[key(review)] = review
    return latest


def performance(filters: PerformanceFilters | None = None) -> dict:
    """Every figure of reading_metrics.figures per reader, per model version and for the programme,
    plus Cohen's kappa between first and second readers."""
    filters = filters or PerformanceFilters()
    studies, study_ids = _studies(filters)
    reviews = _readings(study_ids)
    finals = _latest_per([r for r in reviews if r.is_final], key=lambda r: r.study_id)
    densities = {r.study_id: r.density for r in sorted(reviews, key=lambda r: r.version) if r.density}
    densities.update({sid: r.density for sid, r in finals.items() if r.density})
    if filters.density:
        studies = {sid: s for sid, s in studies.items() if densities.get(sid) == filters.density}
    outcomes = breast_outcomes(study_ids)
    cancer: dict[int, bool | None] = {}
    for (study_id, _side), result in outcomes.items():
        cancer[study_id] = cancer.get(study_id, False) or result == "malignant"
    calls = _breast_calls(reviews)

    def breast_reads_of(review: _Reading) -> list[Read]:
        """The review as two reads, one per breast, each against that breast's own outcome."""
        return [
            Read(
                recall=call.recall,
                cancer=None
                if (review.study_id, side) not in outcomes
                else outcomes[(review.study_id, side)] == "malignant",
            )
            for side, call in calls[review.pk].items()
        ]

    def breast_figures(rows) -> dict:
        return figures(read for review in rows for read in breast_reads_of(review))

    def read_of(review: _Reading) -> Read:
        study = studies[review.study_id]
        return Read(
            recall=review.decision == Review.Decision.ABNORMAL,
            cancer=cancer.get(review.study_id),
            seconds=review.reading_seconds,
            ai_flag=study.exam_flag,
        )

    own = _latest_per(
        [r for r in reviews if r.study_id in studies and r.slot in SCREENING_SLOTS],
        key=lambda r: (r.study_id, r.radiologist_id),
    )
    by_reader: dict[str, list[_Reading]] = {}
    for review in own.values():
        by_reader.setdefault(review.reader, []).append(review)
    slots = _latest_per([r for r in reviews if r.study_id in studies], key=lambda r: (r.study_id, r.slot))
    pairs = [
        (slots[(sid, "first")], slots[(sid, "second")])
        for sid in studies
        if (sid, "first") in slots and (sid, "second") in slots
    ]

    def kappa_of(pair_list) -> dict:
        return cohen_kappa([(a.decision == "abnormal", b.decision == "abnormal") for a, b in pair_list])

    readers = [
        {
            "reader": name,
            **figures(read_of(r) for r in rows),
            "breasts": breast_figures(rows),
            "kappa_with_other_reader": kappa_of([(a, b) for a, b in pairs if name in (a.reader, b.reader)]),
        }
        for name, rows in sorted(by_reader.items())
    ]
    by_model: dict[str, list[Read]] = {}
    for study in studies.values():
        if study.model_name is not None and study.exam_flag is not None:
            by_model.setdefault(study.model_name, []).append(Read(recall=study.exam_flag, cancer=cancer.get(study.pk)))
    models = [{"model": name, **figures(rows)} for name, rows in sorted(by_model.items())]
    programme = figures(read_of(r) for sid, r in finals.items() if sid in studies)
    programme["breasts"] = breast_figures(r for sid, r in finals.items() if sid in studies)
    programme["reader_kappa"] = kappa_of(pairs)
    programme["reader_kappa_breasts"] = cohen_kappa(
        [(calls[a.pk][side].recall, calls[b.pk][side].recall) for a, b in pairs for side in SIDES]
    )
    programme["arbitrated"] = sum(
        1 for sid, r in finals.items() if sid in studies and r.slot in ("arbitration", "consensus")
    )
    return {
        "filters": {
            "date_from": filters.date_from.isoformat() if filters.date_from else None,
            "date_to": filters.date_to.isoformat() if filters.date_to else None,
            "density": filters.density or None,
            "site": filters.site or None,
        },
        "programme": programme,
        "readers": readers,
        "models": models,
    }
