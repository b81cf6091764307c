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
from ...blinding import ai_visibility
from ...errors import PortalError
from ...models import DicomExport, Image, Study
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
    # what else tells who she is or where her exam was asked for
    "PatientComments",
    "AdditionalPatientHistory",
    "StudyDescription",
    "ReferringPhysicianAddress",
    "ReferringPhysicianTelephoneNumbers",
    "ReferringPhysicianIdentificationSequence",
    "RequestingPhysician",
    "PhysiciansOfRecord",
    "PerformingPhysicianName",
    "NameOfPhysiciansReadingStudy",
    "OperatorsName",
    "IssuerOfAccessionNumberSequence",
    "RequestAttributesSequence",
)
# Type 2 attributes (present, possibly empty, in an MG image and an SR): emptied rather than removed.
EMPTIED_KEYWORDS = ("AccessionNumber", "ReferringPhysicianName", "StudyID")


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


def accession(study: Study, user) -> str:
    """The AccessionNumber as this viewer may see it (empty without the right to see identity)."""
    return study.accession_number if can_see_identity(user) else ""


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
    for keyword in EMPTIED_KEYWORDS:
        if keyword in ds:
            setattr(ds, keyword, "")


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
    studies = ai_visibility(user).annotate(selectors.studies_visible_to(user).select_related("patient"))
    study = studies.filter(study_uid=study_uid).first()
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


def reports(studies: list[Study], *, viewer) -> dict[int, list[Report]]:
    """The stored SRs of these studies that this viewer may see, by study id: one per SOP Instance UID (an SR
    sent to several destinations has one export row per destination and one file). No AI-result SR of a study
    whose AI the reading policy hides from the viewer (screening.blinding), even one sent before it did."""
    by_pk = {study.pk: study for study in studies}
    found: dict[int, dict[str, Report]] = {pk: {} for pk in by_pk}
    visibility = ai_visibility(viewer)
    blinded = [study.pk for study in studies if not visibility.shows(study)]
    rows = (
        DicomExport.objects.filter(study__in=studies)
        .exclude(study__in=blinded, kind=DicomExport.Kind.AI)
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


def study_reports(study: Study, *, viewer) -> list[Report]:
    return reports([study], viewer=viewer)[study.pk]


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


def study_instances(study: Study, *, viewer) -> list[Instance]:
    """The study's images, then the SRs the viewer may see."""
    return [*study_images(study), *study_reports(study, viewer=viewer)]


def instances(study: Study, series: str | None = None, sop: str | None = None, *, viewer) -> list[Instance]:
    """The study's images and SRs (as the viewer may see them), narrowed to a series or an instance; none: 404."""
    found = study_instances(study, viewer=viewer)
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


def paging(request) -> tuple[int, int]:
    try:
        limit = int(request.query_params.get("limit", 100))
        offset = int(request.query_params.get("offset", 0))
    except ValueError:
        raise PortalError("limit and offset must be whole numbers", code="invalid", status=400) from None
    if limit < 1 or offset < 0:
        raise PortalError("limit must be at least 1 and offset at least 0", code="invalid", status=400)
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
