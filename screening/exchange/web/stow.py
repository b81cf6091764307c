"""STOW-RS: a multipart/related body of DICOM instances, each through the same ingest as uploads,
answered with the standard response dataset (stored and failed SOP sequences)."""

from __future__ import annotations

import pydicom
from django.conf import settings
from django.urls import reverse

from screening.audit.services import client_ip
from screening.errors import PortalError, StorageFull, TooLarge, UnsupportedMedia
from screening.exchange.web import multipart
from screening.exchange.web.common import dataset, dicom_json, series_uid, sop_class
from screening.intake.cad_sr import MAMMOGRAPHY_CAD_SR
from screening.intake.services.filing import RESEND_CONFLICT
from screening.intake.services.ingest import ingest_file

# STOW-RS failure reasons (PS3.18 table I.2-1)
DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC000
OUT_OF_RESOURCES = 0xA700
DUPLICATE_SOP_INSTANCE = 0x0111  # a resend that differs from the instance held (ingest refuses it, audited)


def _failure(reason: int, sop_class: str = "", sop_uid: str = "") -> dict:
    return dataset(ReferencedSOPClassUID=sop_class, ReferencedSOPInstanceUID=sop_uid, FailureReason=reason)


def _read(file, *keywords: str) -> list[str]:
    """Some UIDs of a part's header, best effort ("" where unreadable)."""
    try:
        file.seek(0)
        ds = pydicom.dcmread(file, stop_before_pixels=True, force=True, specific_tags=list(keywords))
        return [str(ds.get(keyword, "") or "") for keyword in keywords]
    except Exception:
        return [""] * len(keywords)
    finally:
        file.seek(0)


def stow(request, study_uid: str | None):
    boundary = multipart.boundary(request.META.get("CONTENT_TYPE", ""))
    stored, failed, studies = [], [], []
    for part in multipart.iter_parts(request._request, boundary, settings.PORTAL_MAX_UPLOAD_BYTES):
        part_class, sop_uid = _read(part.file, "SOPClassUID", "SOPInstanceUID")
        media = part.headers.get("content-type", "application/dicom").split(";")[0].strip().lower()
        if part.too_large:
            failed.append(_failure(OUT_OF_RESOURCES, part_class, sop_uid))
            continue
        if media != "application/dicom":
            failed.append(_failure(CANNOT_UNDERSTAND, part_class, sop_uid))
            continue
        if study_uid is not None and _read(part.file, "StudyInstanceUID")[0] != study_uid:
            failed.append(_failure(CANNOT_UNDERSTAND, part_class, sop_uid))
            continue
        try:
            result = ingest_file(
                file=part.file,
                filename="stow.dcm",
                user=request.user,
                ip_address=client_ip(request),
                via="stow",
            )
        except UnsupportedMedia:  # a DICOM of another SOP class or modality; else not DICOM at all
            reason = DATASET_DOES_NOT_MATCH_SOP_CLASS if part_class else CANNOT_UNDERSTAND
            failed.append(_failure(reason, part_class, sop_uid))
            continue
        except (TooLarge, StorageFull):
            failed.append(_failure(OUT_OF_RESOURCES, part_class, sop_uid))
            continue
        except PortalError as exc:  # damaged, unsupported, or another's record (409): cannot be stored
            reason = DUPLICATE_SOP_INSTANCE if exc.code == RESEND_CONFLICT else CANNOT_UNDERSTAND
            failed.append(_failure(reason, part_class, sop_uid))
            continue
        study = result.study
        if study.study_uid not in studies:
            studies.append(study.study_uid)
        if result.image is None:  # a vendor's CAD SR: kept with its study (not served back over WADO)
            stored.append(
                dataset(ReferencedSOPClassUID=MAMMOGRAPHY_CAD_SR, ReferencedSOPInstanceUID=result.cad_report.sop_uid)
            )
            continue
        image = result.image
        url = request.build_absolute_uri(
            reverse("dicomweb-instance", args=[study.study_uid, series_uid(image), image.sop_uid])
        )
        stored.append(
            dataset(ReferencedSOPClassUID=sop_class(image), ReferencedSOPInstanceUID=image.sop_uid, RetrieveURL=url)
        )
    if not stored and not failed:
        raise multipart.Malformed("the multipart body holds no part")
    body = {}
    if len(studies) == 1:  # the study's RetrieveURL (PS3.18 table 10.5.3-1): one study stored into
        body.update(dataset(RetrieveURL=request.build_absolute_uri(reverse("dicomweb-study", args=studies))))
    if stored:
        body["00081199"] = {"vr": "SQ", "Value": stored}
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": failed}
    status = 200 if not failed else 202 if stored else 409
    return dicom_json(body, status=status)
