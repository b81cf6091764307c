"""What the DICOMweb resources share: DICOM JSON, identity as the viewer may see it, series UIDs,
study and instance lookups (404 for what the user may not see), the audit of a retrieve, the base view.

A study's instances are its images and the SRs the portal wrote of it (`Report`: the AI result and
the decisions, stored once under sr/ when first sent, whatever the number of destinations). The SRs
are served beside the images, in their own series, to whoever may see the study.
"""

from __future__ import annotations

import functools
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

from screening.accounts.roles import can_read_cases, can_see_identity
from screening.audit import actions
from screening.audit.services import client_ip, record_event
from screening.blinding import AIVisibility, ai_visibility
from screening.errors import PortalError
from screening.exchange import deid, sr
from screening.intake.selectors import pseudonym, studies_visible_to
from screening.models import DicomExport, Image, Refiling, Study

DICOM_JSON = "application/dicom+json"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


# --- DICOM JSON ---------------------------------------------------------------------------------


@functools.cache
def _tag_and_vr(keyword: str) -> tuple[str, str]:
    tag = tag_for_keyword(keyword)
    return f"{tag:08X}", dictionary_VR(tag)


def _element(keyword: str, value) -> tuple[str, dict]:
    key, vr = _tag_and_vr(keyword)
    item: dict = {"vr": vr}
    values = value if isinstance(value, list) else [value]
    values = [v for v in values if v not in (None, "")]
    if values:
        item["Value"] = [{"Alphabetic": str(v)} for v in values] if vr == "PN" else values
    return key, item


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
    return pseudonym(study.patient.patient_id, user), ""


def hide_identity(ds: pydicom.Dataset, study: Study, viewer) -> None:
    """PatientID replaced by the viewer's pseudonym, the name emptied, other identity removed (deid, and what else
    can name the woman or where her exam was asked for), the de-identification declared."""
    deid.pseudonymise(ds, pseudonym(study.patient.patient_id, viewer))


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


# What QIDO-RS answers from an original's header beyond the portal's columns, read once (without pixels)
# and cached by the file's content hash: the file never changes, so neither do they.
HEADER_KEYWORDS = (
    "SeriesInstanceUID",
    "SeriesNumber",
    "SeriesDescription",
    "StudyDescription",
    "StudyTime",
    "StudyID",
    "ReferringPhysicianName",
    "PatientName",
    "BitsAllocated",
    "NumberOfFrames",
    "InstanceNumber",
)


def _read_facts(image: Image) -> dict[str, str]:
    try:
        ds = dicom_header(image.original.name)
        facts = {keyword: str(ds.get(keyword, "") or "") for keyword in HEADER_KEYWORDS}
    except Exception:  # a missing or damaged original: stable stand-ins, never a 500
        facts = dict.fromkeys(HEADER_KEYWORDS, "")
    facts["SeriesInstanceUID"] = facts["SeriesInstanceUID"] or generate_uid(entropy_srcs=[image.sha256])
    return facts


def header_facts(images: list[Image]) -> dict[int, dict[str, str]]:
    """HEADER_KEYWORDS of each DICOM image's original, by image id (strings; "" where absent). An image
    uploaded as a picture has none but its stable SeriesInstanceUID (its study, laterality and view)."""
    found: dict[int, dict[str, str]] = {}
    keys = {f"dicomweb:header:{image.sha256}": image for image in images if image.file_format == Image.Format.DICOM}
    cached = cache.get_many(list(keys)) if keys else {}
    missing = {}
    for key, image in keys.items():
        facts = cached.get(key)
        if facts is None:
            facts = missing[key] = _read_facts(image)
        found[image.pk] = facts
    if missing:
        cache.set_many(missing, None)
    for image in images:
        if image.file_format != Image.Format.DICOM:
            uid = generate_uid(entropy_srcs=[image.study.study_uid, image.laterality, image.view])
            found[image.pk] = {**dict.fromkeys(HEADER_KEYWORDS, ""), "SeriesInstanceUID": uid}
    return found


def series_uid(image: Image) -> str:
    """The image's SeriesInstanceUID: its original's, or a stable one for image files."""
    return header_facts([image])[image.pk]["SeriesInstanceUID"]


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


def instance_attributes(instance: Image | Report, facts: dict[str, str] | None = None) -> dict:
    """QIDO's attributes of an instance (an image, or an SR the portal wrote); `facts`: the image's
    header_facts, read here when not given."""
    if isinstance(instance, Report):
        return report_attributes(instance)
    image = instance
    facts = facts if facts is not None else header_facts([image])[image.pk]
    return dataset(
        SOPClassUID=sop_class(image),
        SOPInstanceUID=image.sop_uid,
        InstanceAvailability="ONLINE",
        InstanceNumber=_number(facts["InstanceNumber"]) or image.pk,
        Rows=image.rows,
        Columns=image.columns,
        BitsAllocated=_number(facts["BitsAllocated"]) or (16 if (image.bits_stored or 8) > 8 else 8),
        NumberOfFrames=_number(facts["NumberOfFrames"]) or 1,
        Modality=modality(image),
        SeriesInstanceUID=facts["SeriesInstanceUID"],
        StudyInstanceUID=image.study.study_uid,
        ImageLaterality=image.laterality if image.laterality in ("L", "R") else "",
        ViewPosition=image.view if image.view in ("CC", "MLO") else "",
    )


def _number(text: str) -> int | None:
    try:
        return int(float(text))
    except ValueError:
        return None


def study_or_404(user, study_uid: str) -> Study:
    studies = ai_visibility(user).annotate(studies_visible_to(user).select_related("patient"))
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
    number: int  # InstanceNumber: 1, 2, ... in the order they were made, within its kind
    kind: str  # sr.AI or sr.DECISION: each kind has its own series

    @property
    def series(self) -> str:
        return sr.series_uid(self.study, self.kind)

    @property
    def series_number(self) -> int:
        return sr.SERIES_NUMBERS[self.kind]


def reports(studies: list[Study], *, viewer, visibility: AIVisibility | None = None) -> dict[int, list[Report]]:
    """The stored SRs of these studies that this viewer may see, by study id: one per SOP Instance UID (an SR
    sent to several destinations has one export row per destination and one file). No AI-result SR of a study
    whose AI the reading policy hides from the viewer (screening.blinding), even one sent before it did; no
    decision SR for a viewer who does not read cases. `visibility`: the viewer's, when the caller has it."""
    by_pk = {study.pk: study for study in studies}
    found: dict[int, dict[str, Report]] = {pk: {} for pk in by_pk}
    visibility = visibility or ai_visibility(viewer)
    blinded = [study.pk for study in studies if not visibility.shows(study)]
    rows = (
        DicomExport.objects.filter(study__in=studies)
        .exclude(study__in=blinded, kind=DicomExport.Kind.AI)
        .exclude(sr_file="")
        .exclude(sop_instance_uid="")
        .order_by("pk")
        .values_list("study_id", "sop_instance_uid", "sr_file", "kind")
    )
    if not can_read_cases(viewer):  # decisions, notes and reader names are not an API client's (study_detail)
        rows = rows.exclude(kind=DicomExport.Kind.DECISION)
    for study_id, uid, name, kind in rows:
        members = found[study_id]
        if uid not in members:
            number = 1 + sum(1 for report in members.values() if report.kind == kind)
            members[uid] = Report(by_pk[study_id], uid, name, number, kind)
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
        InstanceAvailability="ONLINE",
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
    record_event(
        action=actions.DICOMWEB_RETRIEVE,
        user=request.user,
        study=study,
        obj=study,
        ip_address=client_ip(request),
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
