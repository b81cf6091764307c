"""Results back to the PACS: the AI-result and decision SRs, sent by C-STORE to the destinations.

An export is one SR sent to one destination, with its status: pending, then sent, or
failed with the reason. Exports are queued (one per destination) when a study first
gets its exam score from a model version and when a decision is submitted, only
when a destination is configured (PORTAL_DICOM_DESTINATIONS or an enabled
DicomDestination) and the study has a DICOM image to refer to. The task
`export_study_sr` calls `send_export`; a connection failure leaves the row pending
and raises TryAgain, so the task retries with backoff, until it has been tried
PORTAL_DICOM_EXPORT_MAX_ATTEMPTS times: then it fails with the reason. A sent export
is never sent again. The SR is stored under sr/, one file for every destination; it goes
with the study when the study is deleted.

One AI-result SR per study, model version and set of images (its UID derives from them): it
is queued once no image of the study waits for a prediction, and sent once no image has
arrived for PORTAL_DICOM_EXPORT_STABLE_SECONDS (a modality sends a study image by image).
An image predicted before it was sent replaces it (the unsent rows go); one predicted after
a destination received it makes a new SR instance that names the one it supersedes.

Embedded mode (no broker) runs the first attempt in-process after the commit, like every
task; a retry waits in a timer thread (`retry_in_background`), never in the request.
"""

from __future__ import annotations

import io
import logging
import threading
from datetime import timedelta

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connections, transaction
from django.db.models import F, Max
from django.utils import timezone
from pydicom import dcmread, dcmwrite
from pydicom.uid import Comprehensive3DSRStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt

from screening import dispatch
from screening.audit import actions
from screening.audit.services import record_event
from screening.core.storage import delete_stored, delete_stored_after_commit
from screening.exchange import sr
from screening.models import DicomDestination, DicomExport, Image, Review, Study
from screening.reading.rules import policy_of

log = logging.getLogger(__name__)

TASK = "screening.tasks.export_study_sr"
# A pending export untouched for this long lost its task (the longest backoff is 600 s): the sweeper resends it.
STALE_SECONDS = 900
# C-STORE statuses that mean stored: success and the three "warning" statuses (coercion, elements discarded).
STORED = {0x0000, 0xB000, 0xB006, 0xB007}


class TryAgain(Exception):
    """The send failed and attempts remain: retry later with backoff."""


class NotStable(TryAgain):
    """The study received an image too recently for its AI-result SR: ask again later (no attempt counted)."""


def destinations() -> list[str]:
    """Labels (AE@host:port) of the configured destinations: the setting's, then the enabled ones in the admin."""
    labels = [f"{ae}@{host}:{port}" for ae, host, port in settings.PORTAL_DICOM_DESTINATIONS]
    labels += [str(d) for d in DicomDestination.objects.filter(enabled=True)]
    return list(dict.fromkeys(labels))


def _parse(label: str) -> tuple[str, str, int]:
    ae_title, _, address = label.rpartition("@")
    host, _, port = address.rpartition(":")
    return ae_title, host, int(port)


def _has_dicom(study: Study) -> bool:
    return Image.objects.filter(study=study, file_format=Image.Format.DICOM).exists()


def _queue(*, labels: list[str], study: Study, review: Review | None, kind: str, sop_instance_uid: str) -> list[int]:
    queued = []
    for label in labels:
        export, created = DicomExport.objects.get_or_create(
            sop_instance_uid=sop_instance_uid,
            destination=label,
            defaults={"study": study, "review": review, "kind": kind},
        )
        if created:
            queued.append(export.pk)
            dispatch.after_commit(TASK, export.pk)
    return queued


def queue_ai_result(study: Study) -> list[int]:
    """Queue the AI-result SR of a scored study to every destination (none configured: nothing).

    Not while an image of the study still waits for its prediction: the last one queues it. Not before
    the final decision when the reading policy blinds readers to the AI: the PACS (and DICOMweb, which
    serves the SRs sent) would show it to them; the final decision queues it then
    (screening.reading.services.reviews)."""
    labels = destinations()
    if not labels or study.exam_model is None or study.exam_score is None or not _has_dicom(study):
        return []
    waiting = [Image.Status.RECEIVED, Image.Status.QUEUED]
    if Image.objects.filter(study=study, status__in=waiting).exists():
        return []
    if policy_of(study).blind_ai and not Review.objects.filter(study=study, is_final=True).exists():
        return []
    uid = sr.ai_result_uid(study, study.exam_model)
    _drop_unsent_ai_results(study, keep=uid)
    return _queue(labels=labels, study=study, review=None, kind=DicomExport.Kind.AI, sop_instance_uid=uid)


def _drop_unsent_ai_results(study: Study, *, keep: str) -> None:
    """The study's earlier AI-result SRs that no destination has received are replaced by the new one
    (an image predicted after them): their rows and built files go, so the PACS gets the new one only.
    One that a destination has stays; the new SR names it as the one it supersedes."""
    received = DicomExport.objects.filter(study=study, kind=DicomExport.Kind.AI, status=DicomExport.Status.SENT)
    unsent = (
        DicomExport.objects.filter(study=study, kind=DicomExport.Kind.AI)
        .exclude(sop_instance_uid=keep)
        .exclude(sop_instance_uid__in=received.values("sop_instance_uid"))
    )
    files = {name for name in unsent.values_list("sr_file", flat=True) if name}
    if unsent.delete()[0] and files:
        delete_stored_after_commit(files)


def queue_decision(review: Review) -> list[int]:
    """Queue the decision SR of a submitted review to every destination (none configured: nothing)."""
    labels = destinations()
    if not labels or not _has_dicom(review.study):
        return []
    uid = sr.decision_uid(review)
    return _queue(
        labels=labels, study=review.study, review=review, kind=DicomExport.Kind.DECISION, sop_instance_uid=uid
    )


# --- sending (in the export worker) -----------------------------------------------------------------------


def _build(export: DicomExport) -> bytes:
    if export.kind == DicomExport.Kind.AI:
        document = sr.ai_result_sr(export.study)
    else:
        document = sr.decision_sr(export.review)
    if document.SOPInstanceUID != export.sop_instance_uid:
        raise ValueError("superseded: the study was scored again since, and a newer AI-result SR replaces this one")
    buffer = io.BytesIO()
    dcmwrite(buffer, document, enforce_file_format=True)
    return buffer.getvalue()


def _sr_content(export: DicomExport) -> bytes:
    """The SR of this export, stored once for every destination. Built afresh at each attempt until
    a destination has it (from then on the same UID always carries the same content). The rows of
    one SR are locked while it is built, so two destinations' workers never keep two files."""
    uid = export.sop_instance_uid
    with transaction.atomic():
        rows = list(DicomExport.objects.select_for_update().filter(sop_instance_uid=uid).order_by("pk"))
        frozen = next((r.sr_file.name for r in rows if r.status == DicomExport.Status.SENT and r.sr_file), "")
        if frozen:
            DicomExport.objects.filter(pk=export.pk).update(sr_file=frozen)
            with default_storage.open(frozen, "rb") as handle:
                return handle.read()
        content = _build(export)
        name = default_storage.save(f"sr/{uid[-2:]}/{uid}.dcm", ContentFile(content))
        try:
            DicomExport.objects.filter(sop_instance_uid=uid).update(sr_file=name)
        except BaseException:
            default_storage.delete(name)
            raise
        stale = {r.sr_file.name for r in rows if r.sr_file} - {name}
    delete_stored(stale)  # the previous build of this SR, which no destination received
    return content


def c_store(label: str, content: bytes) -> None:
    """Send one SR to a destination; raises ConnectionError with the reason when it was not stored."""
    ae_title, host, port = _parse(label)
    ae = AE(ae_title=settings.PORTAL_DICOM_EXPORT_AE_TITLE)
    ae.connection_timeout = 10  # an unreachable host fails in 10 s, not the system's TCP timeout
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(Comprehensive3DSRStorage, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    connected: list[bool] = []
    association = ae.associate(
        host, port, ae_title=ae_title, evt_handlers=[(evt.EVT_CONN_OPEN, lambda event: connected.append(True))]
    )
    if not association.is_established:
        if not connected:
            raise ConnectionError(f"could not connect to {label}")
        if association.is_rejected:
            raise ConnectionError(f"{label} rejected the association")
        raise ConnectionError(f"{label} aborted the association")
    try:
        status = association.send_c_store(dcmread(io.BytesIO(content)))
    finally:
        association.release()
    code = getattr(status, "Status", None)
    if code is None:
        raise ConnectionError(f"{label} did not answer the C-STORE")
    if code not in STORED:
        raise ConnectionError(f"{label} refused the SR with status 0x{code:04X}")


def _finish(export_id: int, **fields) -> None:
    DicomExport.objects.filter(pk=export_id, status=DicomExport.Status.PENDING).update(updated=timezone.now(), **fields)


def _check_settled(export_id: int) -> None:
    """An AI-result SR waits until no image of its study waits for a prediction and none has arrived
    for PORTAL_DICOM_EXPORT_STABLE_SECONDS, so the PACS gets one SR of the whole exam."""
    row = DicomExport.objects.filter(
        pk=export_id, kind=DicomExport.Kind.AI, status=DicomExport.Status.PENDING
    ).values_list("study_id", flat=True)
    study_id = row.first()
    if study_id is None:
        return
    images = Image.objects.filter(study_id=study_id)
    if images.filter(status__in=[Image.Status.RECEIVED, Image.Status.QUEUED]).exists():
        raise NotStable("an image of the study is still waiting for its prediction")
    last = images.aggregate(last=Max("created"))["last"]
    quiet = timedelta(seconds=settings.PORTAL_DICOM_EXPORT_STABLE_SECONDS)
    if last is not None and timezone.now() - last < quiet:
        raise NotStable("the study received an image less than PORTAL_DICOM_EXPORT_STABLE_SECONDS ago")


def retry_in_background(export_id: int, countdown: float) -> None:
    """Embedded mode (no broker, no worker): the next attempt waits in a timer thread, never in the
    request that queued the export; it runs the task there, in-process, as dispatch does."""
    timer = threading.Timer(countdown, _attempt_in_thread, args=(export_id,))
    timer.daemon = True
    timer.start()


def _attempt_in_thread(export_id: int) -> None:
    try:
        dispatch.send(TASK, export_id)
    finally:
        connections.close_all()  # this thread's own connections


def backoff(export_id: int) -> float:
    """Seconds before the next attempt: 5, 10, 20... up to 10 minutes, by the attempts made so far."""
    attempts = DicomExport.objects.filter(pk=export_id).values_list("attempts", flat=True).first() or 0
    return min(5 * 2 ** max(0, attempts - 1), 600)


def send_export(export_id: int) -> str:
    """Send one pending export (a sent or failed one is left alone); returns its status afterwards.

    Raises TryAgain when the send failed and attempts remain (the row stays pending
    with the reason); at PORTAL_DICOM_EXPORT_MAX_ATTEMPTS it fails with the reason.
    An SR that cannot be built fails at once: trying again would not help. An AI-result SR
    whose study is not settled yet raises NotStable before anything counts as an attempt.
    """
    _check_settled(export_id)
    if not DicomExport.objects.filter(pk=export_id, status=DicomExport.Status.PENDING).update(
        attempts=F("attempts") + 1, updated=timezone.now()
    ):
        row = DicomExport.objects.filter(pk=export_id).values_list("status", flat=True).first()
        return row or ""
    export = DicomExport.objects.select_related("study", "study__exam_model", "review__study").get(pk=export_id)
    try:
        content = _sr_content(export)
    except Exception as exc:
        reason = f"could not build the SR: {exc}"
        _finish(export_id, status=DicomExport.Status.FAILED, error=reason[:2000])
        # The reason stays on the row (for readers and admins): a header's values must not reach the log.
        log.warning("DICOM export %s failed: could not build the SR (%s)", export_id, type(exc).__name__)
        return DicomExport.Status.FAILED
    try:
        c_store(export.destination, content)
    except (ConnectionError, OSError, RuntimeError) as exc:
        reason = str(exc) or type(exc).__name__
        if export.attempts >= settings.PORTAL_DICOM_EXPORT_MAX_ATTEMPTS:
            _finish(
                export_id, status=DicomExport.Status.FAILED, error=f"gave up after {export.attempts} attempts: {reason}"
            )
            log.warning("DICOM export %s failed after %s attempts: %s", export_id, export.attempts, reason)
            return DicomExport.Status.FAILED
        _finish(export_id, error=f"attempt {export.attempts}: {reason}")
        raise TryAgain(reason) from exc
    _finish(export_id, status=DicomExport.Status.SENT, error="")
    log.info("DICOM export %s sent to %s", export_id, export.destination)
    return DicomExport.Status.SENT


def sweep(now=None) -> int:
    """Periodic: send again the pending exports whose task was lost (a broker that was down, a dead worker).

    An export waiting for a retry was updated at its last attempt, at most 10 minutes before
    its next one; one untouched for longer than STALE_SECONDS has no task any more.
    """
    stale = (now or timezone.now()) - timedelta(seconds=STALE_SECONDS)
    ids = list(
        DicomExport.objects.filter(status=DicomExport.Status.PENDING, updated__lt=stale).values_list("pk", flat=True)
    )
    for pk in ids:
        DicomExport.objects.filter(pk=pk, status=DicomExport.Status.PENDING).update(updated=timezone.now())
        dispatch.after_commit(TASK, pk)
    return len(ids)


def fail_export(export_id: int, reason: str) -> None:
    """Terminal failure decided by the task (time limit)."""
    _finish(export_id, status=DicomExport.Status.FAILED, error=reason[:2000])


@transaction.atomic
def send_again(exports, *, user, ip_address: str | None = None) -> int:
    """Queue failed (or stuck pending) exports again from the first attempt, audited; a sent one is not resent."""
    count = 0
    for export in exports:
        if export.status == DicomExport.Status.SENT:
            continue
        DicomExport.objects.filter(pk=export.pk).exclude(status=DicomExport.Status.SENT).update(
            status=DicomExport.Status.PENDING, attempts=0, error="", updated=timezone.now()
        )
        record_event(
            action=actions.DICOM_EXPORT_RESEND,
            user=user,
            study=export.study,
            obj=export,
            ip_address=ip_address,
            detail={"kind": export.kind, "destination": export.destination, "was": export.status},
        )
        dispatch.after_commit(TASK, export.pk)
        count += 1
    return count
