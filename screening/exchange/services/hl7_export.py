"""Results to the RIS: each final decision as an HL7 v2.5.1 ORU^R01 over MLLP, to every HL7 destination.

An HL7 export is one decision sent to one destination, with its status: pending, then sent (the RIS
answered AA), or failed with the reason. Queued when a decision becomes the case's final one (never a
first read of double reading, a read awaiting arbitration or a consensus proposal: those are not final,
and one sent would unblind the other reader), with result status F; a later final decision of the same
case (a correction, an arbitration after a correction) goes as C, a corrected result. The task
`send_hl7_result` calls `send_result`: no connection, a closed connection, no acknowledgement within
PORTAL_HL7_ACK_TIMEOUT, an answer that is not an acknowledgement of this message, or AE/AR leave the
row pending with the reason and raise TryAgain, so the task retries with backoff like the SRs' sends,
until PORTAL_DICOM_EXPORT_MAX_ATTEMPTS; then it fails. The message control ID (MSH-10) stays the same
across attempts, so a RIS that received an attempt whose acknowledgement was lost sees a duplicate.
Acknowledged and given-up sends are audited; the RIS's own words stay on the row, never in the log.

The patient identity follows the destination's `send_identity`: the woman's patient ID, name, birth date
and sex (as the SRs sent to the PACS carry them), or a pseudonym keyed by the destination, no name and
no birth date.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import uuid
from datetime import timedelta

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import connections, transaction
from django.db.models import F
from django.utils import timezone
from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from screening import dispatch
from screening.audit import actions
from screening.audit.services import record_event
from screening.exchange import breast_codes, hl7, mllp
from screening.models import Hl7Destination, Hl7Export, Image, Review
from screening.reading import lexicon
from screening.reading.assessment import breasts_of

log = logging.getLogger(__name__)

TASK = "screening.tasks.send_hl7_result"
STALE_SECONDS = 900  # as the SR exports: a pending row untouched this long lost its task


class TryAgain(Exception):
    """The send failed and attempts remain: retry later with backoff."""


class Refused(Exception):
    """The RIS answered, but not with an AA for this message; `code` is its MSA-1 (AE, AR...) when it said one."""

    def __init__(self, message: str, code: str = ""):
        super().__init__(message)
        self.code = code


def queue_result(review: Review) -> list[int]:
    """Queue the ORU^R01 of a final decision to every enabled HL7 destination (none: nothing)."""
    if not review.is_final:
        return []
    destinations = list(Hl7Destination.objects.filter(enabled=True))
    if not destinations:
        return []
    earlier = Review.objects.filter(study_id=review.study_id, is_final=True, pk__lt=review.pk).exists()
    status = Hl7Export.ResultStatus.CORRECTED if earlier else Hl7Export.ResultStatus.FINAL
    queued = []
    for destination in destinations:
        export, created = Hl7Export.objects.get_or_create(
            review=review,
            destination=destination,
            defaults={
                "study_id": review.study_id,
                "destination_label": str(destination),
                "control_id": uuid.uuid4().hex[:20],
                "result_status": status,
            },
        )
        if created:
            queued.append(export.pk)
            dispatch.after_commit(TASK, export.pk)
    return queued


def pseudonym(destination: Hl7Destination, patient_id: str) -> str:
    """A stable pseudonym of a woman for one destination (another destination, another pseudonym)."""
    digest = hmac.new(
        settings.SECRET_KEY.encode(), f"hl7:{destination.pk}:{patient_id}".encode(), hashlib.sha256
    ).hexdigest()
    return f"anon-{digest[:16]}"


def _structured_name(study, stored: str) -> str:
    """The woman's name as DICOM PN (family^given^...): the portal keeps it as display words, so the
    components come from a source image's header, when that header still says the stored name; else the
    stored words are all the family name."""
    image = Image.objects.filter(study=study, file_format=Image.Format.DICOM).order_by("pk").first()
    if image is not None:
        try:
            with default_storage.open(image.original.name, "rb") as handle:
                said = str(
                    dcmread(handle, stop_before_pixels=True, specific_tags=["PatientName"]).get("PatientName", "")
                )
        except (OSError, InvalidDicomError):
            said = ""
        if said and said.replace("^", " ").strip() == stored:
            return said
    return stored.replace("^", " ")


def _reader(user) -> tuple[str, str, str]:
    return user.get_username()[:64], user.last_name, user.first_name


def result_of(export: Hl7Export) -> hl7.Result:
    """What the ORU^R01 of an export says (screening.exchange.hl7.message writes it)."""
    review, destination = export.review, export.destination
    study, patient = review.study, review.study.patient
    if destination.send_identity:
        name = _structured_name(study, patient.name)
        identity = hl7.Identity(patient.patient_id, name, patient.birth_date, patient.sex)
    else:
        identity = hl7.Identity(pseudonym(destination, patient.patient_id), sex=patient.sex, pseudonymous=True)
    findings = [
        hl7.Finding(f.number, f.laterality, breast_codes.finding_code(f), lexicon.describe(f))
        for f in review.reported_findings.order_by("number")
    ]
    return hl7.Result(
        control_id=export.control_id,
        created=timezone.now(),
        sending_application=destination.sending_application,
        sending_facility=destination.sending_facility,
        receiving_application=destination.receiving_application,
        receiving_facility=destination.receiving_facility,
        identity=identity,
        accession_number=study.accession_number,
        study_uid=study.study_uid,
        study_date=study.study_date,
        reported=review.created,
        result_status=export.result_status,
        reader=_reader(review.radiologist),
        decision=review.decision,
        birads=review.birads,
        breasts={side: (call.decision, call.birads) for side, call in breasts_of(review).items()},
        density=review.density,
        findings=findings,
        note=review.note,
    )


def deliver(destination: Hl7Destination, payload: bytes, control_id: str) -> hl7.Ack:
    """Send one message and read its acknowledgement; raises ConnectionError, TimeoutError, hl7.NotAnAck or
    Refused when the RIS did not take it."""
    answer = mllp.exchange(destination.host, destination.port, payload, timeout=settings.PORTAL_HL7_ACK_TIMEOUT)
    ack = hl7.parse_ack(answer)
    if ack.control_id != control_id:
        raise Refused(f"the acknowledgement names another message ({ack.code})")
    if not ack.accepted:
        raise Refused(f"{ack.code}: {ack.text}" if ack.text else ack.code, ack.code)
    return ack


def _finish(export_id: int, **fields) -> None:
    Hl7Export.objects.filter(pk=export_id, status=Hl7Export.Status.PENDING).update(updated=timezone.now(), **fields)


def _audit(export: Hl7Export, action: str, **detail) -> None:
    record_event(
        action=action,
        study=export.study,
        obj=export,
        detail={
            "destination": export.destination_label,
            "control_id": export.control_id,
            "result_status": export.result_status,
            "review": export.review_id,
            **detail,
        },
    )


def _give_up(export: Hl7Export, reason: str, ack_code: str = "") -> str:
    with transaction.atomic():
        _finish(export.pk, status=Hl7Export.Status.FAILED, error=reason[:2000], ack_code=ack_code)
        _audit(export, actions.HL7_RESULT_FAILED, attempts=export.attempts, ack_code=ack_code)
    # The reason stays on the row (the RIS's words may name the woman): only the id reaches the log.
    log.warning("HL7 export %s failed after %s attempts", export.pk, export.attempts)
    return Hl7Export.Status.FAILED


def send_result(export_id: int) -> str:
    """Send one pending export (a sent or failed one is left alone); returns its status afterwards.

    Raises TryAgain when the send failed and attempts remain; at PORTAL_DICOM_EXPORT_MAX_ATTEMPTS it fails.
    A message that cannot be built (its destination removed) fails at once."""
    if not Hl7Export.objects.filter(pk=export_id, status=Hl7Export.Status.PENDING).update(
        attempts=F("attempts") + 1, updated=timezone.now()
    ):
        return Hl7Export.objects.filter(pk=export_id).values_list("status", flat=True).first() or ""
    export = Hl7Export.objects.select_related(
        "destination", "study", "review__study__patient", "review__radiologist"
    ).get(pk=export_id)
    if export.destination is None:
        return _give_up(export, "the HL7 destination was removed")
    try:
        payload = hl7.message(result_of(export)).encode(hl7.ENCODING)
    except Exception as exc:  # a bug or a row that breaks the message: trying again would not help
        return _give_up(export, f"could not build the message ({type(exc).__name__})")
    try:
        ack = deliver(export.destination, payload, export.control_id)
    except (ConnectionError, OSError, hl7.NotAnAck, Refused) as exc:
        reason = str(exc) or type(exc).__name__
        ack_code = exc.code if isinstance(exc, Refused) else ""
        if export.attempts >= settings.PORTAL_DICOM_EXPORT_MAX_ATTEMPTS:
            return _give_up(export, f"gave up after {export.attempts} attempts: {reason}", ack_code)
        _finish(export_id, error=f"attempt {export.attempts}: {reason}"[:2000], ack_code=ack_code)
        raise TryAgain(reason) from exc
    with transaction.atomic():
        _finish(export_id, status=Hl7Export.Status.SENT, error="", ack_code=ack.code)
        _audit(export, actions.HL7_RESULT_SENT, attempts=export.attempts, ack_code=ack.code)
    log.info("HL7 export %s acknowledged", export_id)
    return Hl7Export.Status.SENT


def backoff(export_id: int) -> float:
    """Seconds before the next attempt: 5, 10, 20... up to 10 minutes, by the attempts made so far."""
    attempts = Hl7Export.objects.filter(pk=export_id).values_list("attempts", flat=True).first() or 0
    return min(5 * 2 ** max(0, attempts - 1), 600)


def retry_in_background(export_id: int, countdown: float) -> None:
    """Embedded mode (no broker): the next attempt waits in a timer thread, never in the request."""
    timer = threading.Timer(countdown, _attempt_in_thread, args=(export_id,))
    timer.daemon = True
    timer.start()


def _attempt_in_thread(export_id: int) -> None:
    try:
        dispatch.send(TASK, export_id)
    finally:
        connections.close_all()


def fail_export(export_id: int, reason: str) -> None:
    """Terminal failure decided by the task (its time limit)."""
    export = Hl7Export.objects.select_related("study").filter(pk=export_id, status=Hl7Export.Status.PENDING).first()
    if export is not None:
        _give_up(export, reason)


def sweep(now=None) -> int:
    """Periodic: send again the pending exports whose task was lost (a broker that was down, a dead worker)."""
    stale = (now or timezone.now()) - timedelta(seconds=STALE_SECONDS)
    ids = list(
        Hl7Export.objects.filter(status=Hl7Export.Status.PENDING, updated__lt=stale).values_list("pk", flat=True)
    )
    for pk in ids:
        Hl7Export.objects.filter(pk=pk, status=Hl7Export.Status.PENDING).update(updated=timezone.now())
        dispatch.after_commit(TASK, pk)
    return len(ids)


@transaction.atomic
def send_again(exports, *, user, ip_address: str | None = None) -> int:
    """Queue failed (or stuck pending) exports again from the first attempt, audited; a sent one is not resent."""
    count = 0
    for export in exports:
        if export.status == Hl7Export.Status.SENT:
            continue
        Hl7Export.objects.filter(pk=export.pk).exclude(status=Hl7Export.Status.SENT).update(
            status=Hl7Export.Status.PENDING, attempts=0, error="", ack_code="", updated=timezone.now()
        )
        record_event(
            action=actions.HL7_EXPORT_RESEND,
            user=user,
            study=export.study,
            obj=export,
            ip_address=ip_address,
            detail={"destination": export.destination_label, "control_id": export.control_id, "was": export.status},
        )
        dispatch.after_commit(TASK, export.pk)
        count += 1
    return count
