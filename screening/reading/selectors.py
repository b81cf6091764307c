"""Reads of the reading workflow: worklists (all studies, my reading, arbitration), reviews, outcomes per breast."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from django.db.models import (
    Count,
    Exists,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Abs, Coalesce
from django.utils import timezone

from screening.blinding import ai_visibility
from screening.intake.selectors import _reviews_shown, studies_visible_to
from screening.models import (
    CaseLock,
    Image,
    Outcome,
    ReaderPreference,
    ReadingPolicy,
    Review,
    Study,
    unread_rank,
)
from screening.reading.models import HangingProtocol
from screening.reading.rules import case_reading, policy_for, policy_of

UNREAD = [Study.Status.NEW, Study.Status.PREDICTED, Study.Status.IN_REVIEW]
WORKLIST_ORDERINGS = {
    # name: (label, order_by) -- unread studies always come first
    # Highest score first, unscored last, then newest: the expression of the unread_by_score index.
    "score": ("AI score", [Coalesce("exam_score", -1.0).desc(), "-id"]),
    "uncertainty": ("Nearest the threshold", [F("uncertainty").asc(nulls_last=True), "-id"]),
    "date": ("Newest first", [F("study_date").desc(nulls_last=True), "-id"]),
    "date_asc": ("Oldest first", [F("study_date").asc(nulls_last=True), "id"]),
    "patient": ("Patient", ["patient__patient_id", "-id"]),
    "status": ("Status", ["status", F("exam_score").desc(nulls_last=True), "-id"]),
}
# Orderings that read the AI result, refused to a user from whom any of it is hidden (screening.blinding);
# "status" then breaks its ties by date for them.
AI_ORDERINGS = {"score", "uncertainty"}
STATUS_BY_DATE = ["status", F("study_date").desc(nulls_last=True), "-id"]


@dataclass(frozen=True)
class WorklistFilters:
    status: str = ""  # one Study.Status, "unread" or "" (all)
    flag: str = ""  # "above", "below", "none" (not scored) or ""
    date_from: date | None = None
    date_to: date | None = None
    mine: bool = False
    ordering: str = ""  # one of WORKLIST_ORDERINGS; "": by AI score, or by date for a reader blinded to the AI


def worklist_for(user, filters: WorklistFilters | None = None) -> QuerySet[Study]:
    """Studies for reading: unread first, then the chosen order (AI score by default, date for a reader
    blinded to the AI). A filter or an order by the AI result is refused to a reader from whom any of it is
    hidden (PortalError): it would answer questions about the hidden scores."""
    filters = filters or WorklistFilters()
    visibility = ai_visibility(user)
    if filters.flag:
        visibility.refuse_query("filtering by the AI flag", "flag")
    if filters.ordering in AI_ORDERINGS:
        visibility.refuse_query("ordering by the AI score", "ordering")
    studies = (
        studies_visible_to(user)
        .select_related("patient", "exam_model", "assigned_to")
        .annotate(
            unread_rank=unread_rank(),
            uncertainty=Abs(F("exam_score") - F("exam_model__threshold")),
            # A correlated subquery, evaluated only for the page's rows after the sort and limit:
            # a COUNT join would aggregate every image of every study first.
            image_count=Subquery(
                Image.objects.filter(study=OuterRef("pk"))
                .order_by()
                .values("study")
                .annotate(n=Count("id"))
                .values("n")[:1]
            ),
        )
    )
    studies = visibility.annotate(_with_reading(studies))
    if filters.status == "unread":
        studies = studies.filter(status__in=UNREAD)
    elif filters.status:
        studies = studies.filter(status=filters.status)
    if filters.flag == "above":
        studies = studies.filter(exam_flag=True)
    elif filters.flag == "below":
        studies = studies.filter(exam_flag=False)
    elif filters.flag == "none":
        studies = studies.filter(exam_flag__isnull=True)
    if filters.date_from:
        studies = studies.filter(study_date__gte=filters.date_from)
    if filters.date_to:
        studies = studies.filter(study_date__lte=filters.date_to)
    if filters.mine:
        studies = studies.filter(assigned_to=user)
    ordering = filters.ordering or ("date" if visibility.hides_any else "score")
    _, order = WORKLIST_ORDERINGS.get(ordering, WORKLIST_ORDERINGS["date" if visibility.hides_any else "score"])
    if ordering == "status" and visibility.hides_any:
        order = STATUS_BY_DATE
    if filters.status:
        # One status group: the unread rank is constant, and leaving it out lets the
        # database read the page straight from an index (unread_by_score).
        return studies.order_by(*order)
    return studies.order_by("unread_rank", *order)


def worklist_counts(user) -> dict[str, int | None]:
    """Studies per status; unread studies flagged by the AI, except for a reader blinded to the AI (None)."""
    counts = dict(Study.objects.values_list("status").annotate(n=Count("id")).order_by())
    counts["unread"] = sum(counts.get(status, 0) for status in UNREAD)
    counts["flagged_unread"] = None
    if not ai_visibility(user).hides_any:
        counts["flagged_unread"] = Study.objects.filter(status__in=UNREAD, exam_flag=True).count()
    return counts


def next_study_after(user, study: Study) -> Study | None:
    """The next case of the same site needing this reader's read, in that site's policy order (never the one
    just read), skipping cases someone else is reading now."""
    return (
        reading_worklist_for(user, policy_of(study))
        .exclude(pk=study.pk)
        .exclude(Exists(CaseLock.objects.filter(study=OuterRef("pk"), expires__gt=timezone.now()).exclude(user=user)))
        .first()
    )


READING_ORDERS = {
    ReadingPolicy.Order.SCORE: [Coalesce("exam_score", -1.0).desc(), "id"],
    ReadingPolicy.Order.DATE: [F("study_date").asc(nulls_last=True), "id"],
    ReadingPolicy.Order.AGE: [F("patient__birth_date").asc(nulls_last=True), "id"],
}


def _with_reading(studies: QuerySet[Study]) -> QuerySet[Study]:
    """Who is reading each study now, and how far its reading has come."""
    now = timezone.now()
    return studies.annotate(
        locked_by=Subquery(CaseLock.objects.filter(study=OuterRef("pk"), expires__gt=now).values("user__username")[:1]),
        reads=Subquery(
            Review.objects.filter(study=OuterRef("pk"), slot__in=["single", "first", "second"])
            .order_by()
            .values("study")
            .annotate(n=Count("radiologist", distinct=True))
            .values("n")[:1]
        ),
    )


def _current_round_reads() -> QuerySet[Review]:
    """The reads of the outer study's current round: all of them, or those since it was reopened (reads_from)."""
    since = Coalesce(OuterRef("reads_from"), Value(datetime(1970, 1, 1, tzinfo=UTC)))
    return Review.objects.filter(study=OuterRef("pk"), created__gte=since)


def reading_worklist_for(user, policy: ReadingPolicy | None = None) -> QuerySet[Study]:
    """The cases of the policy's site that still need this reader's read, in the policy's order.

    Unread or awaiting a second read; never one the reader has already read (no one reads an
    exam twice), never one awaiting arbitration, and only cases unassigned or assigned to them.
    """
    policy = policy or policy_for()
    studies = (
        studies_visible_to(user)
        .filter(status__in=UNREAD, site=policy.site)
        .filter(Q(assigned_to__isnull=True) | Q(assigned_to=user))
        .exclude(Exists(_current_round_reads().filter(radiologist=user)))
        .exclude(Exists(_current_round_reads().filter(slot="second")))
        .select_related("patient", "exam_model", "assigned_to")
    )
    # A blinded policy never orders by score (screening.reading.services.reading.set_policy); another site's may,
    # for its own studies.
    return (
        ai_visibility(user)
        .annotate(_with_reading(studies))
        .order_by(*READING_ORDERS.get(policy.order, READING_ORDERS["score"]))
    )


ARBITRATION_IDS_INLINE = 5000


def arbitration_worklist(user=None) -> QuerySet[Study]:
    """Discordant double reads awaiting the arbitrator's (or the readers' consensus) final decision.

    Found from the second reads without a final decision (the `review_second_read` partial index holds
    only second reads), then those studies by primary key: a handful of cases, where a filter on the
    studies made PostgreSQL scan every unread study of the programme (tens of thousands) for each page
    and for its count."""
    awaiting = (
        Review.objects.filter(slot="second")
        # no final decision since this second read (a study reopened after its final decision reads again)
        .exclude(
            Exists(Review.objects.filter(study=OuterRef("study"), is_final=True, version__gte=OuterRef("version")))
        )
        .values_list("study_id", flat=True)
    )
    ids = list(awaiting[: ARBITRATION_IDS_INLINE + 1])
    # A backlog too long to name in one query (SQLite takes at most 32,766 parameters) is filtered by subquery.
    chosen = Q(pk__in=ids) if len(ids) <= ARBITRATION_IDS_INLINE else Q(pk__in=awaiting)
    studies = (
        Study.objects.filter(chosen, status__in=UNREAD)
        .select_related("exam_model", "assigned_to")
        .prefetch_related("patient")  # for the page's rows only: a join made PostgreSQL hash every patient
    )
    return ai_visibility(user).annotate(_with_reading(studies)).order_by("study_date", "id")


def reviews_of(study: Study, user=None) -> QuerySet[Review]:
    """A case's decision history; for a reader still blinded to it (see study_detail), none of it."""
    if user is None:
        return (
            study.reviews.select_related("radiologist")
            .prefetch_related("findings", "reported_findings__marks")
            .order_by("-version")
        )
    return _reviews_shown(study, user, case_reading(study, user).show_reads)


def breast_outcomes(study_ids=None) -> dict[tuple[int, str], str]:
    """The latest outcome per (study, breast): {(study id, "L" or "R"): result}, for the given study ids
    (a list, or a query of ids) or for every study."""
    rows = Outcome.objects.order_by("study_id", "laterality", "-id")
    if study_ids is not None:
        rows = rows.filter(study_id__in=study_ids)
    latest: dict[tuple[int, str], str] = {}
    for study_id, laterality, result in rows.values_list("study_id", "laterality", "result"):
        latest.setdefault((study_id, laterality), result)
    return latest


def hanging_protocol_of(user) -> str:
    """The hanging protocol the viewer opens with for this reader (the 4-up until they choose another)."""
    chosen = ReaderPreference.objects.filter(user_id=getattr(user, "pk", None)).values_list(
        "hanging_protocol", flat=True
    )
    return chosen.first() or HangingProtocol.FOUR_UP.value
