"""Mammogram ingest: one path for the upload page, the REST API, DICOM (C-STORE, STOW-RS) and `import_images`.

cheap validation -> store the original -> Patient/Study/Image rows in one transaction
-> answer. Nothing is decoded here: the validation reads the header and checks the pixel
data by its lengths and markers (`pixel_checks`); the renditions are made after the commit
by the render worker (`renditions`), which fails the image with its reason when the pixels
turn out to be undecodable. The SHA-256 (the dedup key) is computed while the upload
streams in (`screening.intake.uploads`, the STOW-RS parser, the DICOM receiver), so the file is
not read again for it. A file saved before a failed transaction is deleted again, so bad
input leaves neither an orphan file nor half a record.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass
from typing import IO

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.utils import timezone
from pydicom.uid import generate_uid

from screening.ai.services.predictions import enqueue_images
from screening.audit import actions
from screening.audit.services import record_event
from screening.core.storage import delete_stored
from screening.errors import PortalError, StorageFull, TooLarge, is_disk_full
from screening.intake.selectors import studies_visible_to
from screening.intake.services import filing
from screening.intake.services.ingest_validation import Parsed, ParsedCadSr, megabytes, parse
from screening.intake.services.renditions import queue_render
from screening.models import CadMark, CadReport, Image, Patient, Study
from screening.sites.selectors import clean_site

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestResult:
    image: Image | None  # None for a vendor's CAD SR (cad_report holds it)
    created: bool
    cad_report: CadReport | None = None

    @property
    def study(self) -> Study:
        return self.image.study if self.image is not None else self.cad_report.study


def ingest_file(
    *,
    file: IO[bytes] | File,
    filename: str = "",
    patient_id: str = "",
    laterality: str = "",
    view: str = "",
    accession_number: str = "",
    user=None,
    ip_address: str | None = None,
    via: str = "",
    site: str = "",
) -> IngestResult:
    """Ingest one DICOM or image file. Same bytes or same SOPInstanceUID again returns the existing image.

    patient_id, laterality and view describe a plain image file; a DICOM carries its
    own (the given values fill only what the DICOM lacks). `user`, `ip_address` and
    `via` go into the audit trail. A new study belongs to `site` (a Site code; the default site when
    empty); an image joining a study already held leaves that study where it is. Raises PortalError.
    """
    django_file = file if isinstance(file, File) else File(file, name=filename)
    size = django_file.size
    if not size:
        raise PortalError("the file is empty", field="file")
    if size > settings.PORTAL_MAX_UPLOAD_BYTES:
        raise TooLarge(f"the file is {megabytes(size)}; the limit is {megabytes(settings.PORTAL_MAX_UPLOAD_BYTES)}")
    laterality = _clean_choice(laterality, Image.Laterality, "laterality", {"LEFT": "L", "RIGHT": "R"})
    view = _clean_choice(view, Image.View, "view", {})
    site = clean_site(site)

    # Computed while the upload streamed in (screening.intake.uploads and the DICOM entry points); a
    # file handed over by other code (import_images) is read once more for it.
    sha256 = getattr(django_file, "sha256", None) or _sha256(django_file)
    audit = {"user": user, "ip_address": ip_address, "detail": {"via": via}}
    existing = Image.objects.filter(sha256=sha256).first()
    if existing is not None:
        given = {"patient_id": patient_id.strip(), "laterality": laterality, "view": view}
        return _existing_for(existing, audit, same_bytes_filed=given)
    held_report = CadReport.objects.filter(sha256=sha256).select_related("study").first()
    if held_report is not None:
        return _existing_report(held_report, audit, same_bytes=True)

    parsed = parse(
        django_file,
        size=size,
        patient_id=patient_id.strip(),
        laterality=laterality,
        view=view,
        accession_number=accession_number.strip(),
        sha256=sha256,
    )
    if isinstance(parsed, ParsedCadSr):
        return _store_cad_sr(django_file, parsed, sha256=sha256, size=size, site=site, audit=audit)
    existing = Image.objects.filter(sop_uid=parsed.sop_uid).first()
    if existing is not None:
        return _existing_for(existing, audit, other_bytes=(parsed, django_file))
    return _store(django_file, parsed, sha256=sha256, size=size, site=site, audit=audit)


def _clean_choice(value: str, choices, name: str, aliases: dict[str, str]) -> str:
    value = (value or "").strip().upper()
    value = aliases.get(value, value)
    if value and value not in choices.values:
        allowed = ", ".join(choices.values)
        raise PortalError(f"{name} must be one of {allowed}, got {value!r}", field=name)
    return value


def _sha256(django_file: File) -> str:
    digest = hashlib.sha256()
    django_file.seek(0)
    for chunk in django_file.chunks():
        digest.update(chunk)
    django_file.seek(0)
    return digest.hexdigest()


# One answer for every upload that points into a record its sender may not add to: a study
# (StudyInstanceUID) of another patient or of another account, or an image held by another
# account. The same status, code and message whichever it is and whatever PatientID the file
# carries, so the answer tells nothing about whom the record belongs to.
NOT_YOURS = "the portal already holds this image or its study (StudyInstanceUID) under a record you cannot add to"


def _refused() -> PortalError:
    return PortalError(NOT_YOURS, code="conflict", status=409)


def _may_add_to(study_id: int, user) -> bool:
    # No user: the portal itself (import_images, seed_labels), which files into any study.
    return user is None or studies_visible_to(user).filter(pk=study_id).exists()


def _existing_for(
    image: Image, audit: dict, *, same_bytes_filed: dict | None = None, other_bytes: tuple | None = None
) -> IngestResult:
    """The same file or SOPInstanceUID again: the image already held, if its sender may see it and the
    resend is identical to it. A resend that differs (other bytes under the SOPInstanceUID, or the same
    picture file asked for under another patient, side or view) is refused with 409 and audited:
    answering "stored" while throwing the new content away would hide a misfiled image."""
    if not _may_add_to(image.study_id, audit["user"]):
        raise filing.refuse_resend(image=image, reason="not_yours", message=NOT_YOURS, audit=audit, code="conflict")
    if same_bytes_filed is not None and filing.given_filing_differs(image, **same_bytes_filed):
        raise filing.refuse_resend(
            image=image, reason="same_file_other_filing", message=filing.OTHER_FILING, audit=audit
        )
    if other_bytes is not None and filing.resend_differs(image, *other_bytes):
        raise filing.refuse_resend(
            image=image, reason="same_uid_other_content", message=filing.OTHER_CONTENT, audit=audit
        )
    return IngestResult(image, created=False)


def _store(django_file: File, parsed: Parsed, *, sha256: str, size: int, site: str, audit: dict) -> IngestResult:
    """Store the original (local storage moves an upload's temporary file into place: no copy),
    write the rows, and queue the rendition and the prediction for after the commit."""
    key = uuid.uuid4().hex
    extension = "dcm" if parsed.file_format == Image.Format.DICOM else parsed.file_format
    target = f"originals/{key[:2]}/{key}.{extension}"
    saved: list[str] = []
    try:
        django_file.seek(0)
        try:
            saved.append(default_storage.save(target, django_file))
        except OSError as exc:
            delete_stored([target])  # storage leaves what it wrote of a file it could not finish
            if is_disk_full(exc):
                raise StorageFull() from exc
            raise
        with transaction.atomic():
            image = _write_rows(parsed, original=saved[0], sha256=sha256, size=size, site=site, audit=audit)
            record_event(action=actions.INGEST, study=image.study, obj=image, **audit)
            _reopen_if_reported(image, audit)
            queue_render(image)  # tasks are published after the commit: the rendition first
            enqueue_images([image.pk])
    except IntegrityError:
        # A concurrent upload of the same file or SOPInstanceUID won the race.
        delete_stored(saved)
        by_bytes = Image.objects.filter(sha256=sha256).first()
        if by_bytes is not None:
            filed = {"patient_id": parsed.patient_id, "laterality": parsed.laterality, "view": parsed.view}
            return _existing_for(by_bytes, audit, same_bytes_filed=filed)
        by_uid = Image.objects.filter(sop_uid=parsed.sop_uid).first()
        if by_uid is None:
            raise
        return _existing_for(by_uid, audit, other_bytes=(parsed, django_file))
    except BaseException:
        delete_stored(saved)
        raise
    log.info("ingested image %s into study %s", image.pk, image.study_id)
    return IngestResult(image, created=True)


def _filed_study(parsed: Parsed | ParsedCadSr, *, site: str, audit: dict) -> Study:
    """The woman and the study an incoming object joins (both made when new)."""
    patient, created = Patient.objects.get_or_create(
        patient_id=parsed.patient_id,
        defaults={"name": parsed.patient_name, "birth_date": parsed.birth_date, "sex": parsed.sex},
    )
    study = _study_for(parsed, patient, audit["user"], site)
    if not created:  # another name or birth date under her PatientID: held for an admin, not merged silently
        filing.hold_if_conflicting(study=study, patient=patient, parsed=parsed, audit=audit)
    return study


def _write_rows(parsed: Parsed, *, original: str, sha256: str, size: int, site: str, audit: dict) -> Image:
    user = audit["user"]
    study = _filed_study(parsed, site=site, audit=audit)
    rows, columns = parsed.rows, parsed.columns
    return Image.objects.create(
        sop_uid=parsed.sop_uid,
        study=study,
        laterality=parsed.laterality,
        view=parsed.view,
        file_format=parsed.file_format,
        original=original,
        rows=rows,
        columns=columns,
        bits_stored=parsed.bits_stored,
        photometric=parsed.photometric,
        manufacturer=parsed.manufacturer,
        presentation_intent=parsed.presentation_intent,
        sha256=sha256,
        size_bytes=size,
        uploaded_by=user if user is not None and user.is_authenticated else None,
    )


def _study_for(parsed: Parsed, patient: Patient, user, site: str) -> Study:
    """The study the image joins: only one its sender may see, and only the same patient's."""
    if parsed.study_uid:
        study, created = Study.objects.get_or_create(
            study_uid=parsed.study_uid,
            defaults={
                "patient": patient,
                "accession_number": parsed.accession_number,
                "study_date": parsed.study_date,
                "uid_generated": parsed.uid_generated,
                "site": site,
            },
        )
        if not created and (study.patient_id != patient.pk or not _may_add_to(study.pk, user)):
            raise _refused()
        return study
    # Image files: one open study per patient, accession number and day, among those the sender may see.
    candidates = Study.objects.all() if user is None else studies_visible_to(user)
    study = (
        candidates.select_for_update()
        .filter(
            patient=patient,
            uid_generated=True,
            accession_number=parsed.accession_number,
            study_date=parsed.study_date,
            site=site,
        )
        .exclude(status=Study.Status.REPORTED)
        .order_by("-created")
        .first()
    )
    if study is None:
        study = Study.objects.create(
            study_uid=generate_uid(),
            uid_generated=True,
            patient=patient,
            accession_number=parsed.accession_number,
            study_date=parsed.study_date,
            site=site,
        )
    return study


def _reopen_if_reported(image: Image, audit: dict) -> None:
    """A reported study that receives an image needs reading again: back to new (predicted once
    scored), so the worklist shows it unread. Conditional, so a concurrent report is not lost."""
    now = timezone.now()
    # reads_from: the reads so far were of the exam without this image; the case is read again from the start
    reopened = Study.objects.filter(pk=image.study_id, status=Study.Status.REPORTED).update(
        status=Study.Status.NEW, updated=now, reads_from=now
    )
    if reopened:
        image.study.status, image.study.reads_from = Study.Status.NEW, now
        record_event(
            action=actions.STUDY_REOPEN,
            study=image.study,
            obj=image.study,
            user=audit["user"],
            ip_address=audit["ip_address"],
            detail={**audit["detail"], "why": "a new image arrived after the study was reported", "image": image.pk},
        )


def _existing_report(report: CadReport, audit: dict, *, same_bytes: bool) -> IngestResult:
    """A CAD SR sent again: the one held, if its sender may see it and it is the same file."""
    if not _may_add_to(report.study_id, audit["user"]):
        raise _refused()
    if not same_bytes:
        raise PortalError(filing.OTHER_CONTENT, code=filing.RESEND_CONFLICT, status=409)
    return IngestResult(None, created=False, cad_report=report)


def _store_cad_sr(
    django_file: File, parsed: ParsedCadSr, *, sha256: str, size: int, site: str, audit: dict
) -> IngestResult:
    """Keep a vendor's Mammography CAD SR as it arrived, file it with its study, and store its marks; findings
    that could not be read are recorded (on the report and in the audit event), never a refusal."""
    held = CadReport.objects.filter(sop_uid=parsed.sop_uid).select_related("study").first()
    if held is not None:
        return _existing_report(held, audit, same_bytes=False)
    key = uuid.uuid4().hex
    target = f"originals/{key[:2]}/{key}.dcm"
    saved: list[str] = []
    try:
        django_file.seek(0)
        try:
            saved.append(default_storage.save(target, django_file))
        except OSError as exc:
            delete_stored([target])
            if is_disk_full(exc):
                raise StorageFull() from exc
            raise
        with transaction.atomic():
            user = audit["user"]
            report = CadReport.objects.create(
                study=_filed_study(parsed, site=site, audit=audit),
                sop_uid=parsed.sop_uid,
                original=saved[0],
                sha256=sha256,
                size_bytes=size,
                manufacturer=parsed.manufacturer,
                parse_error=parsed.parse_error,
                uploaded_by=user if user is not None and user.is_authenticated else None,
            )
            CadMark.objects.bulk_create(
                CadMark(
                    report=report,
                    image_sop_uid=m.image_sop_uid,
                    finding=m.finding,
                    graphic_type=m.graphic_type,
                    x=m.x,
                    y=m.y,
                    width=m.width,
                    height=m.height,
                    certainty=m.certainty,
                    probability=m.probability,
                )
                for m in parsed.marks
            )
            detail = {**audit["detail"], "marks": len(parsed.marks)}
            if parsed.parse_error:
                detail["parse_error"] = parsed.parse_error
            record_event(action=actions.CAD_SR_INGEST, study=report.study, obj=report, **{**audit, "detail": detail})
    except IntegrityError:
        delete_stored(saved)
        raced = CadReport.objects.filter(sop_uid=parsed.sop_uid).select_related("study").first()
        if raced is None:
            raise
        return _existing_report(raced, audit, same_bytes=raced.sha256 == sha256)
    except BaseException:
        delete_stored(saved)
        raise
    if parsed.parse_error:
        log.warning("CAD SR %s of study %s kept without marks: %s", report.pk, report.study_id, parsed.parse_error)
    log.info("ingested CAD SR %s into study %s (%d marks)", report.pk, report.study_id, len(parsed.marks))
    return IngestResult(None, created=True, cad_report=report)
