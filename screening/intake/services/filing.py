"""Which woman, side and view an image is filed under, and how that is kept right (issue 21).

- Ingest: a resend that differs from what is stored is refused (409 / a C-STORE failure) and
  audited, never answered "stored" while its content is thrown away; an identical resend stays
  an idempotent success. Demographics that disagree with the stored woman hold the study for
  reconciliation (`DemographicsConflict`) instead of merging it into her silently.
- Admins: `refile_image` / `refile_study` correct a filing as a new version (`Refiling`, append-only,
  audited) and re-score the exams it touches; `reconcile_same_woman` releases a held study.
"""

from __future__ import annotations

import hashlib
import logging
import re
from typing import IO

import pydicom
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone
from pydicom.uid import generate_uid

from screening.ai.services.predictions import enqueue_images, update_exam_scores
from screening.audit import actions
from screening.audit.services import record_event
from screening.core.storage import delete_stored_after_commit
from screening.errors import PortalError
from screening.intake.services.ingest_validation import Parsed
from screening.models import DemographicsConflict, Image, Patient, Prediction, Refiling, Study

log = logging.getLogger(__name__)

# --- resends ----------------------------------------------------------------------------------------

OTHER_CONTENT = (
    "an image with this SOPInstanceUID is already stored with other content (other pixels, another patient, "
    "study, side or view); the portal keeps what it holds: ask an admin to correct the filing if it is wrong"
)
OTHER_FILING = (
    "this file is already stored for another patient, side or view; the portal keeps what it holds: "
    "ask an admin to refile the image if it is wrong"
)


RESEND_CONFLICT = "resend_conflict"  # the error code of a refused resend (the DICOM receiver answers 0x0111)


def refuse_resend(*, image: Image, reason: str, message: str, audit: dict, code: str = RESEND_CONFLICT) -> PortalError:
    """Audit a refused resend (its own transaction: the refusal is on record even though the upload fails)
    and return the 409 to raise. The detail names what differed, never a value the sender gave."""
    record_event(
        action=actions.INGEST_CONFLICT,
        study=image.study,
        obj=image,
        user=audit.get("user"),
        ip_address=audit.get("ip_address"),
        detail={**(audit.get("detail") or {}), "reason": reason},
    )
    log.warning("refused a resend of image %s: %s", image.pk, reason)
    return PortalError(message, code=code, status=409)


def given_filing_differs(image: Image, *, patient_id: str, laterality: str, view: str) -> bool:
    """The same bytes again, as a picture file whose filing comes from the uploader: does what it asks
    for now (patient, side, view; blank ones ask nothing) differ from what is stored?"""
    if image.file_format == Image.Format.DICOM:
        return False  # a DICOM files itself from its header: the same bytes file the same way
    stored_patient = Patient.objects.filter(studies__images=image).values_list("patient_id", flat=True).first()
    return bool(
        (patient_id and patient_id != stored_patient)
        or (laterality and laterality != image.laterality)
        or (view and view != image.view)
    )


def resend_differs(image: Image, parsed: Parsed, upload: IO[bytes]) -> bool:
    """Other bytes under a SOPInstanceUID already held: identical only when it files the same way
    (patient, study, side, view) and its pixel data is byte for byte the same (a header-only change)."""
    study = Study.objects.select_related("patient").get(pk=image.study_id)
    if (
        parsed.patient_id != study.patient.patient_id
        or (not parsed.uid_generated and parsed.study_uid != study.study_uid)
        or parsed.laterality != image.laterality
        or parsed.view != image.view
    ):
        return True
    if image.file_format != Image.Format.DICOM or parsed.file_format != Image.Format.DICOM:
        return True
    try:
        with default_storage.open(image.original.name, "rb") as stored:
            held = _pixel_digest(stored)
    except OSError:
        return True
    return held is None or held != _pixel_digest(upload)


def _pixel_digest(fobj: IO[bytes]) -> str | None:
    """SHA-256 of the transfer syntax and the Pixel Data element as stored (not decoded); None if unreadable."""
    try:
        fobj.seek(0)
        ds = pydicom.dcmread(fobj, force=True)
        syntax = str(ds.file_meta.get("TransferSyntaxUID", "")) if hasattr(ds, "file_meta") else ""
        pixels = ds.get("PixelData")
        if pixels is None:
            return None
        return hashlib.sha256(syntax.encode() + b"\0" + bytes(pixels)).hexdigest()
    except Exception:  # a damaged file differs from anything
        return None
    finally:
        fobj.seek(0)


# --- demographics -----------------------------------------------------------------------------------


def _name_key(name: str) -> str:
    return re.sub(r"\s+", " ", name.replace("^", " ")).strip().upper()


def demographics_conflict(patient: Patient, parsed: Parsed) -> bool:
    """The file names the stored woman's PatientID with another name or birth date (blank values say nothing)."""
    name, stored = _name_key(parsed.patient_name), _name_key(patient.name)
    if name and stored and name != stored:
        return True
    return bool(parsed.birth_date and patient.birth_date and parsed.birth_date != patient.birth_date)


def hold_if_conflicting(*, study: Study, patient: Patient, parsed: Parsed, audit: dict) -> bool:
    """Hold `study` for reconciliation when the file's demographics disagree with the stored woman's."""
    if not demographics_conflict(patient, parsed):
        return False
    conflict, created = DemographicsConflict.objects.get_or_create(
        study=study,
        defaults={
            "patient": patient,
            "received_name": parsed.patient_name,
            "received_birth_date": parsed.birth_date,
            "stored_name": patient.name,
            "stored_birth_date": patient.birth_date,
        },
    )
    if created:
        record_event(
            action=actions.DEMOGRAPHICS_HOLD,
            study=study,
            obj=conflict,
            user=audit.get("user"),
            ip_address=audit.get("ip_address"),
            detail={**(audit.get("detail") or {}), "why": "same PatientID, another name or birth date"},
        )
    return True


def _resolve(conflict: DemographicsConflict, *, resolution: str, user, note: str) -> bool:
    """Close an open conflict once (conditional: two admins at once resolve it once)."""
    return bool(
        DemographicsConflict.objects.filter(pk=conflict.pk, resolution=DemographicsConflict.Resolution.OPEN).update(
            resolution=resolution, resolved_by=user, resolved_at=timezone.now(), note=note
        )
    )


def reconcile_same_woman(
    *, conflict: DemographicsConflict, user, note: str = "", update_demographics: bool = False, ip_address=None
) -> None:
    """The admin confirms the held study is the stored woman's; optionally her stored name and birth
    date become the received ones. The study then shows as her prior like any other."""
    with transaction.atomic():
        if not _resolve(conflict, resolution=DemographicsConflict.Resolution.SAME_WOMAN, user=user, note=note):
            raise PortalError("this conflict was already resolved", code="already_resolved", status=409)
        if update_demographics:
            Patient.objects.filter(pk=conflict.patient_id).update(
                name=conflict.received_name, birth_date=conflict.received_birth_date
            )
        record_event(
            action=actions.DEMOGRAPHICS_RECONCILE,
            user=user,
            study=conflict.study,
            obj=conflict,
            ip_address=ip_address,
            detail={"resolution": "same_woman", "demographics_updated": update_demographics, "note": note},
        )


# --- refiling ---------------------------------------------------------------------------------------


def _patient(patient_id: str) -> Patient:
    patient_id = (patient_id or "").strip()
    if not patient_id:
        raise PortalError("give the patient ID to file under", field="patient_id")
    if len(patient_id) > 64:
        raise PortalError("patient_id is longer than 64 characters", field="patient_id")
    return Patient.objects.get_or_create(patient_id=patient_id)[0]


def _choice(value: str, choices, name: str, current: str) -> str:
    value = (value or "").strip().upper()
    if not value:
        return current
    if value not in choices.values:
        raise PortalError(f"{name} must be one of {', '.join(choices.values)}", field=name)
    return value


def _reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise PortalError("say why the filing is corrected (it is kept in the history)", field="reason")
    return reason


def _record(image: Image, *, from_study: Study, from_patient: Patient, from_side: str, from_view: str, reason, user):
    version = (Refiling.objects.filter(image=image).order_by("-version").values_list("version", flat=True).first()) or 0
    return Refiling.objects.create(
        image=image,
        version=version + 1,
        from_study=from_study,
        from_patient=from_patient,
        from_laterality=from_side,
        from_view=from_view,
        to_study_id=image.study_id,
        to_patient_id=Study.objects.filter(pk=image.study_id).values_list("patient_id", flat=True).get(),
        to_laterality=image.laterality,
        to_view=image.view,
        reason=reason,
        by=user,
    )


def _study_for_refiled_image(source: Study, patient: Patient) -> Study:
    """The study an image moved to another woman joins: a new one, like its old study in all but the patient."""
    return Study.objects.create(
        study_uid=generate_uid(),
        uid_generated=True,
        patient=patient,
        accession_number=source.accession_number,
        study_date=source.study_date,
        site=source.site,
    )


def _predict_again(images: list[Image]) -> None:
    """Side feeds the model (it mirrors right breasts): predictions made under the old side are dropped, the
    image predicted again by the champion (heatmap files go with their rows)."""
    rows = list(Prediction.objects.filter(image__in=images))
    names = [row.heatmap.name for row in rows if row.heatmap]
    Prediction.objects.filter(pk__in=[row.pk for row in rows]).delete()
    Image.objects.filter(pk__in=[i.pk for i in images]).exclude(status=Image.Status.FAILED).update(
        status=Image.Status.RECEIVED
    )
    enqueue_images([i.pk for i in images])
    delete_stored_after_commit(names)


def _rescore(*studies: Study) -> None:
    for study in {s.pk: s for s in studies if s is not None}.values():
        study.refresh_from_db()
        update_exam_scores(study)


def refile_image(
    *,
    image: Image,
    user,
    reason: str,
    patient_id: str = "",
    laterality: str = "",
    view: str = "",
    ip_address: str | None = None,
) -> Refiling:
    """Correct where one image is filed. Another patient moves it into a new study of hers (not the last image
    of its study: refile the study then); another side predicts it again. Both exams are re-scored."""
    reason = _reason(reason)
    with transaction.atomic():
        image = Image.objects.select_for_update().select_related("study__patient").get(pk=image.pk)
        source, before = image.study, image.study.patient
        side = _choice(laterality, Image.Laterality, "laterality", image.laterality)
        new_view = _choice(view, Image.View, "view", image.view)
        patient = _patient(patient_id) if patient_id.strip() else before
        if (patient.pk, side, new_view) == (before.pk, image.laterality, image.view):
            raise PortalError("this is the filing the image already has: nothing to correct", code="unchanged")
        if patient.pk != before.pk:
            if not source.images.exclude(pk=image.pk).exists():
                raise PortalError(
                    "this is the only image of its study: refile the study to move it to another patient",
                    code="last_image",
                )
            image.study = _study_for_refiled_image(source, patient)
        side_changed = side != image.laterality
        from_side, from_view = image.laterality, image.view
        image.laterality, image.view = side, new_view
        image.save(update_fields=["study", "laterality", "view"])
        refiling = _record(
            image,
            from_study=source,
            from_patient=before,
            from_side=from_side,
            from_view=from_view,
            reason=reason,
            user=user,
        )
        if side_changed or patient.pk != before.pk:
            _predict_again([image])
        _rescore(source, image.study)
        _audit(refiling, user=user, ip_address=ip_address, study=source)
        if image.study_id != source.pk:
            _audit(refiling, user=user, ip_address=ip_address, study=image.study)
    return refiling


def refile_study(*, study: Study, user, reason: str, patient_id: str, ip_address: str | None = None) -> list[Refiling]:
    """Move a whole study to another patient (new or held): a Refiling version for each of its images.
    An open demographics conflict of the study is resolved as refiled."""
    reason = _reason(reason)
    with transaction.atomic():
        study = Study.objects.select_for_update().select_related("patient").get(pk=study.pk)
        before, patient = study.patient, _patient(patient_id)
        if patient.pk == before.pk:
            raise PortalError("the study is already filed under this patient: nothing to correct", code="unchanged")
        study.patient = patient
        study.save(update_fields=["patient", "updated"])
        refilings = [
            _record(
                image,
                from_study=study,
                from_patient=before,
                from_side=image.laterality,
                from_view=image.view,
                reason=reason,
                user=user,
            )
            for image in study.images.order_by("pk")
        ]
        conflict = DemographicsConflict.objects.filter(study=study).first()
        if conflict is not None:
            _resolve(conflict, resolution=DemographicsConflict.Resolution.REFILED, user=user, note=reason)
        _rescore(study)
        record_event(
            action=actions.STUDY_REFILE,
            user=user,
            study=study,
            obj=study,
            ip_address=ip_address,
            detail={
                "from_patient": before.pk,
                "to_patient": patient.pk,
                "images": [r.image_id for r in refilings],
                "reason": reason,
            },
        )
    return refilings


def _audit(refiling: Refiling, *, user, ip_address, study: Study) -> None:
    record_event(
        action=actions.IMAGE_REFILE,
        user=user,
        study=study,
        obj=refiling.image,
        ip_address=ip_address,
        detail={
            "version": refiling.version,
            "from": {
                "study": refiling.from_study_id,
                "patient": refiling.from_patient_id,
                "laterality": refiling.from_laterality,
                "view": refiling.from_view,
            },
            "to": {
                "study": refiling.to_study_id,
                "patient": refiling.to_patient_id,
                "laterality": refiling.to_laterality,
                "view": refiling.to_view,
            },
            "reason": refiling.reason,
        },
    )


def filing_history(image: Image) -> list[dict]:
    """Every filing the image has had, oldest first: as it arrived, then each correction."""
    rows = list(Refiling.objects.filter(image=image).select_related("from_patient", "to_patient", "by"))
    if not rows:
        return [
            {
                "version": 0,
                "study": image.study_id,
                "patient": image.study.patient,
                "laterality": image.laterality,
                "view": image.view,
            }
        ]
    first = rows[0]
    history = [
        {
            "version": 0,
            "study": first.from_study_id,
            "patient": first.from_patient,
            "laterality": first.from_laterality,
            "view": first.from_view,
        }
    ]
    for row in rows:
        history.append(
            {
                "version": row.version,
                "study": row.to_study_id,
                "patient": row.to_patient,
                "laterality": row.to_laterality,
                "view": row.to_view,
                "reason": row.reason,
                "by": row.by,
                "at": row.created,
            }
        )
    return history
