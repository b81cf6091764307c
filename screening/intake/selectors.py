"""Every shared read: pages and API use these, with their joins done here."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, date, datetime

from django.conf import settings
from django.db.models import (
    Count,
    Exists,
    F,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Value,
    prefetch_related_objects,
)
from django.db.models.functions import Abs, Coalesce
from django.utils import timezone

from screening.accounts.roles import can_read_cases, can_see_identity, roles_of, sees_all_studies
from screening.blinding import AIVisibility, ai_visibility
from screening.errors import PortalError
from screening.models import (
    AuditEvent,
    CaseLock,
    DemographicsConflict,
    Image,
    Patient,
    Prediction,
    ReadingPolicy,
    Review,
    Study,
    unread_rank,
)
from screening.reading.services.reading import case_reading, policy_for, policy_of

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


def _predictions_newest_first(visibility: AIVisibility) -> Prefetch:
    """An image's predictions, newest model version first: only those of studies whose AI the user may see."""
    return Prefetch(
        "predictions",
        queryset=Prediction.objects.filter(visibility.condition("image__study"))
        .select_related("model_version")
        .order_by("-model_version_id", "-id"),
    )


def studies_visible_to(user) -> QuerySet[Study]:
    """The one visibility rule, for studies and all they hold (images, predictions, patients, files).

    Radiologists, admins and API clients granted `screening.view_all_studies` see every
    study; any other role sees a study when it sent at least one of its images.
    """
    if sees_all_studies(user):
        return Study.objects.all()
    if not roles_of(user):
        return Study.objects.none()
    return Study.objects.filter(Exists(Image.objects.filter(study=OuterRef("pk"), uploaded_by=user)))


def _in_visible_studies(queryset: QuerySet, user, study_field: str) -> QuerySet:
    if sees_all_studies(user):
        return queryset  # no subquery for readers: their lists stay one index scan
    return queryset.filter(**{f"{study_field}__in": studies_visible_to(user).values("pk")})


def images_visible_to(user) -> QuerySet[Image]:
    # The list shows no study or patient field beyond the study's id: no join to either. Newest first:
    # ids follow creation, and the primary key index serves it.
    visibility = ai_visibility(user)
    images = Image.objects.prefetch_related(_predictions_newest_first(visibility)).order_by("-id")
    return _in_visible_studies(visibility.annotate(images, "study"), user, "study_id")


def predictions_visible_to(user) -> QuerySet[Prediction]:
    """Predictions of the studies the user may see, and of those only where the user may see the AI result
    (screening.blinding): a blinded reader's list, detail and heatmap requests find none, whatever the id."""
    predictions = Prediction.objects.filter(ai_visibility(user).condition("image__study"))
    return _in_visible_studies(predictions.select_related("model_version").order_by("-id"), user, "image__study_id")


def patients_visible_to(user) -> QuerySet[Patient]:
    """Patients with at least one study the user may see."""
    patients = Patient.objects.order_by("-id")
    if sees_all_studies(user):
        return patients
    return patients.filter(pk__in=studies_visible_to(user).values("patient_id"))


def current_prediction(image: Image) -> Prediction | None:
    """The prediction by the newest model version (uses the prefetch from the selectors above)."""
    rows = list(image.predictions.all())
    return rows[0] if rows else None


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
    # A blinded policy never orders by score (services.reading.set_policy); another site's may, for its own studies.
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


def study_detail(user, pk: int) -> Study:
    """A study the user may see, with its images and predictions; with its reviews for case readers
    only (decisions, notes and reader names are not an API client's). Raises Study.DoesNotExist.

    Blinding (the reading policy): a reader who has not read the case yet gets no other reader's
    decision and, when the policy blinds the AI, no AI result (screening.blinding): the keys are there,
    empty or null, so nothing blinded ever leaves the server.
    """
    visibility = ai_visibility(user)
    study = visibility.annotate(studies_visible_to(user).select_related("patient", "exam_model")).get(pk=pk)
    reading = case_reading(study, user) if can_read_cases(user) else None
    show_ai = visibility.shows(study)
    predictions = _predictions_newest_first(visibility)
    prefetches = [
        Prefetch("images", queryset=Image.objects.order_by("laterality", "view", "id").prefetch_related(predictions))
    ]
    if reading is not None:
        prefetches.append(Prefetch("reviews", queryset=_reviews_shown(study, user, reading.show_reads)))
    if not show_ai:
        visibility.mask(study)  # the model too: its threshold and name would say which side of it the score lies
    prefetch_related_objects([study], *prefetches)
    return study


def _reviews_shown(study: Study, user, show_reads: bool) -> QuerySet[Review]:
    reviews = Review.objects.filter(study=study).select_related("radiologist").prefetch_related("findings")
    if not show_reads:
        reviews = reviews.filter(radiologist=user)  # nothing before the user's own read: no one else's
    return reviews.order_by("-version")


def study_by_reference(user, reference: str, study_date: date | None = None) -> Study:
    """The one study a person names as they know it: its accession number or the patient's ID, narrowed by the
    study date when the patient has several. Only for users who may see identity (both name the woman or her
    request; for others they would be a way to probe who is screened here): others name a study by its
    StudyInstanceUID (the CSV import). Raises PortalError (field "study") when none or several match."""
    if not can_see_identity(user):
        raise PortalError(
            "looking a study up by accession number or patient ID needs the right to see patient identity; "
            "the CSV import names studies by StudyInstanceUID",
            field="study",
        )
    reference = reference.strip()
    if not reference:
        raise PortalError("give the study's accession number or the patient ID", field="study")
    studies = studies_visible_to(user).select_related("patient")
    if study_date is not None:
        studies = studies.filter(study_date=study_date)
    found, named = list(studies.filter(accession_number=reference)[:11]), "accession number"
    if not found:
        found, named = list(studies.filter(patient__patient_id=reference)[:11]), "patient ID"
    on_date = f" on {study_date.isoformat()}" if study_date else ""
    if not found:
        raise PortalError(f"no study with this accession number or patient ID{on_date}", field="study")
    if len(found) > 1:
        count = "more than 10" if len(found) > 10 else str(len(found))
        hint = (
            "the CSV import names a study by its StudyInstanceUID"
            if study_date
            else "give the study date too, or the accession number"
        )
        raise PortalError(f"{count} studies match this {named}{on_date}: {hint}", field="study")
    return found[0]


def audit_trail(study_id: int) -> QuerySet[AuditEvent]:
    """A study's events by its id: the trail outlives a deleted study."""
    return AuditEvent.objects.filter(study_id=study_id).order_by("-at")


def reviews_of(study: Study, user=None) -> QuerySet[Review]:
    """A case's decision history; for a reader still blinded to it (see study_detail), none of it."""
    if user is None:
        return study.reviews.select_related("radiologist").prefetch_related("findings").order_by("-version")
    return _reviews_shown(study, user, case_reading(study, user).show_reads)


def pseudonym(patient_id: str, viewer) -> str:
    """A stable pseudonymous id for a viewer not allowed to see patient identity.

    Keyed by the viewer too: a client that uploads a guessed patient id gets a pseudonym
    that matches nothing another client is shown for the real patient.
    """
    message = f"{viewer.pk}:{patient_id}".encode()
    digest = hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()
    return f"anon-{digest[:16]}"


# --- filing (issue 21) ----------------------------------------------------------------------------------


def _open_conflict() -> QuerySet[DemographicsConflict]:
    return DemographicsConflict.objects.filter(study=OuterRef("pk"), resolution=DemographicsConflict.Resolution.OPEN)


def held_for_reconciliation() -> QuerySet[DemographicsConflict]:
    """The reconciliation queue: studies whose demographics disagree with the stored woman's, oldest first."""
    return DemographicsConflict.objects.filter(resolution=DemographicsConflict.Resolution.OPEN).select_related(
        "study", "patient"
    )


def is_held(study: Study) -> bool:
    return DemographicsConflict.objects.filter(study=study, resolution=DemographicsConflict.Resolution.OPEN).exists()


def priors_of(study: Study) -> QuerySet[Study]:
    """The woman's earlier studies. A study held for reconciliation is nobody's prior, and has none: until an
    admin has said whose it is, it may be another woman's."""
    if is_held(study):
        return Study.objects.none()
    earlier = Study.objects.filter(patient_id=study.patient_id).exclude(pk=study.pk).exclude(Exists(_open_conflict()))
    if study.study_date is not None:
        return earlier.filter(study_date__lt=study.study_date)
    return earlier.filter(created__lt=study.created)
