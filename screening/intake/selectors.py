"""What each user may see of the case data (studies, images, predictions, patients, pseudonyms) and the
case detail, priors and reconciliation reads: one rule per kind of data, used by every face."""

from __future__ import annotations

import hashlib
import hmac
from datetime import date

from django.conf import settings
from django.db.models import (
    Exists,
    OuterRef,
    Prefetch,
    QuerySet,
    prefetch_related_objects,
)

from screening.accounts.roles import can_read_cases, can_see_identity, roles_of, sees_all_studies
from screening.blinding import AIVisibility, ai_visibility
from screening.errors import PortalError
from screening.models import (
    CadMark,
    DemographicsConflict,
    DicomExport,
    Hl7Export,
    Image,
    Patient,
    Prediction,
    Review,
    Study,
)
from screening.reading.rules import case_reading


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


def study_detail(user, pk: int) -> Study:
    """A study the user may see, with its images and predictions; with its reviews, its SRs sent to the
    PACS and its results sent to the RIS for case readers only (decisions, notes and reader names are not
    an API client's). Raises Study.DoesNotExist.

    Blinding (the reading policy): a reader who has not read the case yet gets no other reader's
    decision, nor a sign that one went out (no decision SR, no HL7 result: as the case page), and, when the
    policy blinds the AI, no AI result (screening.blinding): the keys are there, empty or null, so nothing
    blinded ever leaves the server.
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
        prefetches += [
            Prefetch("reviews", queryset=_reviews_shown(study, user, reading.show_reads)),
            Prefetch("exports", queryset=_exports_shown(reading.show_reads)),
            Prefetch("hl7_exports", queryset=_hl7_exports_shown(reading.show_reads)),
        ]
    if not show_ai:
        visibility.mask(study)  # the model too: its threshold and name would say which side of it the score lies
    prefetch_related_objects([study], *prefetches)
    return study


def _reviews_shown(study: Study, user, show_reads: bool) -> QuerySet[Review]:
    reviews = (
        Review.objects.filter(study=study)
        .select_related("radiologist")
        .prefetch_related("findings", "reported_findings__marks")
    )
    if not show_reads:
        reviews = reviews.filter(radiologist=user)  # nothing before the user's own read: no one else's
    return reviews.order_by("-version")


def _exports_shown(show_reads: bool) -> QuerySet[DicomExport]:
    """The SRs sent to the PACS, newest first: a decision's only to a reader who may see the reads (the AI
    result's follow the AI's blinding: StudyCaseSerializer)."""
    exports = DicomExport.objects.all()
    return exports if show_reads else exports.exclude(kind=DicomExport.Kind.DECISION)


def _hl7_exports_shown(show_reads: bool) -> QuerySet[Hl7Export]:
    """The final decisions sent to a RIS, newest first, each with the decision's version: only to a reader who
    may see the reads (each is a decision: a blinded reader may not learn that one was made)."""
    return Hl7Export.objects.select_related("review") if show_reads else Hl7Export.objects.none()


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


def cad_marks_shown(study: Study, visibility: AIVisibility) -> dict[str, list[dict]]:
    """The vendor CAD marks (from the CAD SRs the study holds) by the SOPInstanceUID of the image each is drawn
    on. A vendor's CAD is AI: nothing at all for a user from whom the reading policy hides this study's AI
    (screening.blinding), the same rule as the portal's own AI result."""
    if not visibility.shows(study):
        return {}
    marks: dict[str, list[dict]] = {}
    rows = CadMark.objects.filter(report__study=study).order_by("report_id", "id")
    for mark in rows.values(
        "image_sop_uid", "finding", "graphic_type", "x", "y", "width", "height", "probability", "certainty"
    ):
        marks.setdefault(mark.pop("image_sop_uid"), []).append(mark)
    return marks
