"""What the DICOMweb resources share: DICOM JSON, identity as the viewer may see it, series UIDs,
study and instance lookups (404 for what the user may not see), the audit of a retrieve, the base view.

A study's instances are its images and the SRs the portal wrote of it (`Report`: the AI result and
the decisions, stored once under sr/ when first sent, whatever the number of destinations). The SRs
are served beside the images, in their own series, to whoever may see the study.
"""

from __future__ import annotations

from dataclasses import dataclass

import pydicom
from django.core.cache import cache
from django.core.files.storage import default_storage
from django.http import HttpResponse
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.uid import Comprehensive3DSRStorage, generate_uid
from rest_framework.renderers import JSONRenderer
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from ... import selectors, services
from ...errors import PortalError
from ...models import DicomExport, Image, Refiling, Study
from ...roles import can_see_identity
from .. import sr

DICOM_JSON = "application/dicom+json"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
IDENTITY_KEYWORDS = (
    "PatientBirthDate",
    "PatientBirthTime",
    "OtherPatientIDs",
    "OtherPatientIDsSequence",
    "OtherPatientNames",
    "PatientMotherBirthName",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "IssuerOfPatientID",
    "MedicalRecordLocator",
    "ReferencedPatientSequence",
)


# --- DICOM JSON ---------------------------------------------------------------------------------


def _element(keyword: str, value) -> tuple[str, dict]:
    tag = tag_for_keyword(keyword)
    vr = dictionary_VR(tag)
    item: dict = {"vr": vr}
    values = value if isinstance(value, list) else [value]
    values = [v for v in values if v not in (None, "")]
    if values:
        item["Value"] = [{"Alphabetic": str(v)} for v in values] if vr == "PN" else values
    return f"{tag:08X}", item


def dataset(**attributes) -> dict:
    """A DICOM JSON dataset of keyword=value attributes (None or "" gives an empty element)."""
    return dict(_element(keyword, value) for keyword, value in attributes.items())


def dicom_json(body, status: int = 200) -> HttpResponse:
    return HttpResponse(JSONRenderer().render(body), status=status, content_type=DICOM_JSON)


# --- identity, series, lookups -------------------------------------------------------------------


def patient(study: Study, user) -> tuple[str, str]:
    """(PatientID, PatientName) as this viewer may see them."""
    if can_see_identity(user):
        return study.patient.patient_id, study.patient.name
    return selectors.pseudonym(study.patient.patient_id, user), ""


def hide_identity(ds: pydicom.Dataset, study: Study, viewer) -> None:
    """PatientID replaced by the viewer's pseudonym, the name emptied, other identity removed."""
    ds.PatientID = selectors.pseudonym(study.patient.patient_id, viewer)
    ds.PatientName = ""
    for keyword in IDENTITY_KEYWORDS:
        if keyword in ds:
            delattr(ds, keyword)


def refiled(instance) -> bool:
    """An image an admin refiled (issue 21): its stored header still names the old patient, study, side or view."""
    return isinstance(instance, Image) and Refiling.objects.filter(image=instance).exists()


def apply_filing(ds: pydicom.Dataset, image: Image) -> None:
    """Write the image's current filing into a copy of its header: what the portal holds wins over what the
    modality sent, so a refiled image never leaves under the woman, study, side or view it was corrected from."""
    patient_row = image.study.patient
    ds.PatientID = patient_row.patient_id
    ds.PatientName = patient_row.name.replace(" ", "^") if patient_row.name else ""
    ds.PatientBirthDate = patient_row.birth_date.strftime("%Y%m%d") if patient_row.birth_date else ""
    ds.StudyInstanceUID = image.study.study_uid
    if image.laterality in ("L", "R"):
        ds.ImageLaterality = image.laterality
    if image.view in ("CC", "MLO"):
        ds.ViewPosition = image.view


def dicom_header(name: str) -> pydicom.Dataset:
    """The header of a stored DICOM file, without its pixels."""
    with default_storage.open(name, "rb") as fh:
        return pydicom.dcmread(fh, stop_before_pixels=True, force=True)


def series_uid(image: Image) -> str:
    """The image's SeriesInstanceUID: its original's, or a stable one for image files."""
    if image.file_format != Image.Format.DICOM:
        entropy = [image.study.study_uid, image.laterality, image.view]
        return generate_uid(entropy_srcs=entropy)
    key = f"dicomweb:series:{image.sha256}"
    uid = cache.get(key)
    if uid is None:
        try:
            uid = str(dicom_header(image.original.name).get("SeriesInstanceUID", "") or "")
        except Exception:  # a missing or damaged original: a stable stand-in, never a 500
            uid = ""
        uid = uid or generate_uid(entropy_srcs=[image.sha256])
        cache.set(key, uid, None)
    return uid


def series_number(image: Image) -> int:
    return {"R": 1, "L": 2}.get(image.laterality, 3) * 10 + (1 if image.view == "CC" else 2)


def modality(image: Image) -> str:
    return "MG" if image.file_format == Image.Format.DICOM else "OT"


def sop_class(image: Image) -> str:
    if image.file_format != Image.Format.DICOM:
        return SECONDARY_CAPTURE
    if image.presentation_intent == "FOR PROCESSING":
        return "1.2.840.10008.5.1.4.1.1.1.2.1"
    return "1.2.840.10008.5.1.4.1.1.1.2"


def instance_attributes(instance: Image | Report) -> dict:
    """QIDO's attributes of an instance (an image, or an SR the portal wrote)."""
    if isinstance(instance, Report):
        return report_attributes(instance)
    image = instance
    return dataset(
        SOPClassUID=sop_class(image),
        SOPInstanceUID=image.sop_uid,
        InstanceNumber=image.pk,
        Rows=image.rows,
        Columns=image.columns,
        Modality=modality(image),
        SeriesInstanceUID=series_uid(image),
        StudyInstanceUID=image.study.study_uid,
        ImageLaterality=image.laterality if image.laterality in ("L", "R") else "",
        ViewPosition=image.view if image.view in ("CC", "MLO") else "",
    )


def study_or_404(user, study_uid: str) -> Study:
    study = selectors.studies_visible_to(user).select_related("patient").filter(study_uid=study_uid).first()
    if study is None:
        raise PortalError("no such study", code="not_found", status=404)
    return study


def study_images(study: Study) -> list[Image]:
    return list(Image.objects.filter(study=study).select_related("study").order_by("laterality", "view", "id"))


@dataclass(frozen=True)
class Report:
    """An SR the portal wrote of a study (a Comprehensive 3D SR), as DICOMweb serves it."""

    study: Study
    sop_uid: str
    file_name: str
    number: int  # InstanceNumber: 1, 2, ... in the order they were made

    @property
    def series(self) -> str:
        return sr.series_uid(self.study)


def reports(studies: list[Study]) -> dict[int, list[Report]]:
    """The stored SRs of these studies, by study id: one per SOP Instance UID (an SR sent to several
    destinations has one export row per destination and one file)."""
    by_pk = {study.pk: study for study in studies}
    found: dict[int, dict[str, Report]] = {pk: {} for pk in by_pk}
    rows = (
        DicomExport.objects.filter(study__in=studies)
        .exclude(sr_file="")
        .exclude(sop_instance_uid="")
        .order_by("pk")
        .values_list("study_id", "sop_instance_uid", "sr_file")
    )
    for study_id, uid, name in rows:
        members = found[study_id]
        if uid not in members:
            members[uid] = Report(by_pk[study_id], uid, name, len(members) + 1)
    return {pk: list(members.values()) for pk, members in found.items()}


def study_reports(study: Study) -> list[Report]:
    return reports([study])[study.pk]


Instance = Image | Report


def instance_series(instance: Instance) -> str:
    return instance.series if isinstance(instance, Report) else series_uid(instance)


def file_name(instance: Instance) -> str:
    """The stored DICOM file of an instance (a DICOM image's original, or an SR)."""
    return instance.file_name if isinstance(instance, Report) else instance.original.name


def report_attributes(report: Report) -> dict:
    return dataset(
        SOPClassUID=Comprehensive3DSRStorage,
        SOPInstanceUID=report.sop_uid,
        InstanceNumber=report.number,
        Modality="SR",
        SeriesInstanceUID=report.series,
        StudyInstanceUID=report.study.study_uid,
    )


def study_instances(study: Study) -> list[Instance]:
    """The study's images, then its SRs."""
    return [*study_images(study), *study_reports(study)]


def instances(study: Study, series: str | None = None, sop: str | None = None) -> list[Instance]:
    """The study's images and SRs, narrowed to a series or an instance; none: 404."""
    found = study_instances(study)
    if sop is not None:
        found = [i for i in found if i.sop_uid == sop]
    if series is not None:
        found = [i for i in found if instance_series(i) == series]
    if not found:
        raise PortalError("no such series or instance", code="not_found", status=404)
    return found


def audit(request, study: Study, what: str, opened: list[Instance]) -> None:
    detail = {"what": what, "images": [i.pk for i in opened if isinstance(i, Image)]}
    srs = [i.sop_uid for i in opened if isinstance(i, Report)]
    if srs:
        detail["srs"] = srs
    services.record_event(
        action="dicomweb_retrieve",
        user=request.user,
        study=study,
        obj=study,
        ip_address=services.client_ip(request),
        detail=detail,
    )


def param(request, keyword: str) -> str:
    """A QIDO query parameter, by keyword or by tag."""
    tag = f"{tag_for_keyword(keyword):08X}"
    return (request.query_params.get(keyword) or request.query_params.get(tag) or "").strip()


MAX_OFFSET = 2**31 - 1


def paging(request) -> tuple[int, int]:
    try:
        limit = int(request.query_params.get("limit", 100))
        offset = int(request.query_params.get("offset", 0))
    except ValueError:
        raise PortalError("limit and offset must be whole numbers", code="invalid", status=400) from None
    if limit < 1 or offset < 0:
        raise PortalError("limit must be at least 1 and offset at least 0", code="invalid", status=400)
    if offset > MAX_OFFSET:  # past the database's OFFSET range: a 500 before
        raise PortalError(f"offset must be at most {MAX_OFFSET:,}", code="invalid", status=400)
    return min(limit, 1000), offset


class DicomWebView(APIView):
    """Token or session auth, any portal role; errors in the portal's JSON shape."""

    schema = None  # not part of the REST API's OpenAPI document

    def perform_content_negotiation(self, request, force=False):
        # Success answers are DICOM media types built here; only errors go through a renderer.
        return JSONRenderer(), "application/json"


class StowThrottled(DicomWebView):
    """A view whose POST is STOW-RS: throttled like uploads; its GETs are not."""

    throttle_scope = "uploads"

    def get_throttles(self):
        return [ScopedRateThrottle()] if self.request.method == "POST" else []
