"""The Query/Retrieve information model over the portal's data: patients, studies, series and instances
(images and the portal's SRs) as one portal account sees them over DICOMweb, and C-FIND matching.

The same reads as DICOMweb (screening/exchange/web/common.py): `studies_visible_to` decides which studies,
the study's instances are its DICOM images and its stored SRs, and a viewer who may not see patient
identity sees its pseudonym as PatientID and no name or birth date. Matching follows PS3.4 C.2.2.2:
universal (empty), single value, wildcard (* and ?; person names case-insensitively), UID list and
date/time range. An attribute the portal does not hold is returned empty and never narrows a search.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from django.db.models import Exists, OuterRef
from pydicom import Dataset
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.uid import Comprehensive3DSRStorage

from screening.accounts.roles import can_see_identity
from screening.exchange import sr
from screening.exchange.web.common import (
    Instance,
    Report,
    accession,
    header_facts,
    modality,
    patient,
    reports,
    series_number,
    sop_class,
)
from screening.intake.selectors import studies_visible_to
from screening.models import Image, Study

LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")
NOT_MATCHING_KEYS = {"QueryRetrieveLevel", "SpecificCharacterSet", "RetrieveAETitle", "TimezoneOffsetFromUTC"}
# Past this many studies, a C-FIND must narrow its search (a whole archive is not one answer).
MAX_STUDIES = 5000


class QueryError(Exception):
    """An identifier the SCP cannot process: a status (0xA900, 0xC000...) and an Error Comment (64 characters)."""

    def __init__(self, status: int, comment: str):
        super().__init__(comment)
        self.status, self.comment = status, comment[:64]


IDENTIFIER_DOES_NOT_MATCH = 0xA900
UNABLE_TO_PROCESS = 0xC000
OUT_OF_RESOURCES = 0xA700  # Refused: Out of Resources (too many matches)


@dataclass
class Entity:
    """One match: its attributes, and the instances it holds (what a retrieve of it sends)."""

    attributes: dict[str, object]
    instances: list[tuple[Study, Instance]] = field(repr=False)

    @property
    def studies(self) -> list[Study]:
        return list({study.pk: study for study, _ in self.instances}.values())

    def value(self, keyword: str):
        return self.attributes.get(keyword, "")


# --- matching -------------------------------------------------------------------------------------------


def _text(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [str(v) for v in value]
    return [str(value)]


def _wildcard(pattern: str, flags: int) -> re.Pattern:
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern) + r"\Z", flags)


def _name(value: str) -> str:
    """A person name compared by its components: 'Doe^Jane', 'Doe^Jane^^' and 'Doe Jane' (names stored
    before the ^ was kept) are one name."""
    return " ".join(value.replace("^", " ").split())


def matches(keyword: str, wanted, held) -> bool:
    """Does the held value match the identifier's value for this keyword (PS3.4 C.2.2.2)?"""
    keys = [k for k in _text(wanted) if k != ""]
    if not keys or all(k == "*" for k in keys):
        return True  # universal matching
    vr = dictionary_VR(keyword)
    values = [v for v in _text(held) if v != ""]
    if not values:
        return False
    if vr == "UI":
        return bool(set(keys) & set(values))
    if vr in ("DA", "TM", "DT") and len(keys) == 1 and "-" in keys[0]:
        low, _, high = keys[0].partition("-")
        return any((not low or v >= low) and (not high or v[: len(high)] <= high) for v in values)
    flags = re.IGNORECASE if vr == "PN" else 0
    for key in keys:
        if vr == "PN":
            key = _name(key)
        pattern = _wildcard(key, flags) if ("*" in key or "?" in key) else None
        for value in values:
            candidate = _name(value) if vr == "PN" else value
            if pattern is not None and pattern.match(candidate):
                return True
            if pattern is None and (candidate.lower() == key.lower() if vr == "PN" else candidate == key):
                return True
    return False


def keys_of(identifier: Dataset) -> dict[str, object]:
    """The identifier's attributes by keyword (private and unknown tags left out)."""
    keys = {}
    for element in identifier:
        keyword = element.keyword or keyword_for_tag(element.tag)
        if keyword:
            keys[keyword] = element.value if element.VR != "SQ" else None
    return keys


def _single(keys: dict, keyword: str) -> str:
    values = [v for v in _text(keys.get(keyword)) if v]
    return values[0] if len(values) == 1 and not any(c in values[0] for c in "*?") else ""


def _uids(keys: dict, keyword: str) -> list[str]:
    return [v for v in _text(keys.get(keyword)) if v and "*" not in v and "?" not in v]


# --- the entities ---------------------------------------------------------------------------------------


def _date(value: dt.date | None) -> str:
    return value.strftime("%Y%m%d") if value else ""


class Held:
    """A study with its retrievable instances (its DICOM images, not pictures uploaded as PNG or JPEG, and
    the SRs the account may see: DICOMweb's rule) and its images' header facts."""

    def __init__(self, study: Study, images: list[Image], srs: list[Report], facts: dict[int, dict[str, str]]):
        self.study, self.instances, self.facts = study, [*images, *srs], facts

    def series_of(self, instance: Instance) -> str:
        return instance.series if isinstance(instance, Report) else self.facts[instance.pk]["SeriesInstanceUID"]

    def series(self) -> dict[str, list[Instance]]:
        found: dict[str, list[Instance]] = {}
        for instance in self.instances:
            found.setdefault(self.series_of(instance), []).append(instance)
        return found

    def header(self) -> dict[str, str]:
        images = [i for i in self.instances if isinstance(i, Image)]
        return self.facts[images[0].pk] if images else {}


def load(studies: list[Study], user) -> list[Held]:
    """The studies with their instances and header facts: a few queries for all of them (not per study)."""
    images: dict[int, list[Image]] = {study.pk: [] for study in studies}
    dicom = Image.objects.filter(study__in=studies, file_format=Image.Format.DICOM).select_related("study")
    for image in dicom.order_by("laterality", "view", "id"):
        images[image.study_id].append(image)
    srs = reports(studies, viewer=user)
    facts = header_facts([image for members in images.values() for image in members])
    return [Held(study, images[study.pk], srs[study.pk], facts) for study in studies]


def _patient_attributes(held: Held, user) -> dict[str, object]:
    study = held.study
    patient_id, name = patient(study, user)
    identity = can_see_identity(user)
    if identity and held.header().get("PatientName"):
        name = held.header()["PatientName"]  # as stored, with its ^ separators
    birth = _date(study.patient.birth_date) if identity else ""
    return {"PatientID": patient_id, "PatientName": name, "PatientBirthDate": birth, "PatientSex": study.patient.sex}


def _kind(instance: Instance) -> str:
    return "SR" if isinstance(instance, Report) else modality(instance)


def _study_attributes(held: Held, user) -> dict[str, object]:
    study, header = held.study, held.header()
    # StudyID, StudyDescription and the referring physician can name the woman or say where her exam was
    # asked for: only for accounts that may see identity (QIDO's rule), as the accession (common.accession).
    identifying = header if can_see_identity(user) else {}
    return {
        **_patient_attributes(held, user),
        "StudyInstanceUID": study.study_uid,
        "StudyDate": _date(study.study_date),
        "StudyTime": header.get("StudyTime", ""),
        "StudyID": identifying.get("StudyID", ""),
        "StudyDescription": identifying.get("StudyDescription", ""),
        "ReferringPhysicianName": identifying.get("ReferringPhysicianName", ""),
        "AccessionNumber": accession(study, user),
        "ModalitiesInStudy": sorted({_kind(i) for i in held.instances}),
        "NumberOfStudyRelatedSeries": len(held.series()),
        "NumberOfStudyRelatedInstances": len(held.instances),
    }


def _series_attributes(held: Held, uid: str, members: list[Instance]) -> dict[str, object]:
    first = members[0]
    if isinstance(first, Report):
        number, description = first.series_number, sr.SERIES_DESCRIPTIONS[first.kind]
    else:
        facts = held.facts[first.pk]
        number = int(facts["SeriesNumber"]) if facts["SeriesNumber"].isdigit() else series_number(first)
        description = facts["SeriesDescription"]
    return {
        "StudyInstanceUID": held.study.study_uid,
        "SeriesInstanceUID": uid,
        "Modality": _kind(first),
        "SeriesNumber": number,
        "SeriesDescription": description,
        "NumberOfSeriesRelatedInstances": len(members),
    }


def _instance_attributes(held: Held, instance: Instance) -> dict[str, object]:
    common = {
        "StudyInstanceUID": held.study.study_uid,
        "SeriesInstanceUID": held.series_of(instance),
        "SOPInstanceUID": instance.sop_uid,
        "Modality": _kind(instance),
    }
    if isinstance(instance, Report):
        return {**common, "SOPClassUID": Comprehensive3DSRStorage, "InstanceNumber": instance.number}
    facts = held.facts[instance.pk]
    return {
        **common,
        "SOPClassUID": sop_class(instance),
        "InstanceNumber": int(facts["InstanceNumber"]) if facts["InstanceNumber"].isdigit() else instance.pk,
        "Rows": instance.rows,
        "Columns": instance.columns,
        "NumberOfFrames": int(facts["NumberOfFrames"]) if facts["NumberOfFrames"].isdigit() else 1,
        "ImageLaterality": instance.laterality if instance.laterality in ("L", "R") else "",
        "ViewPosition": instance.view if instance.view in ("CC", "MLO") else "",
    }


def _studies(user, keys: dict) -> list[Study]:
    """The visible studies with a retrievable instance, narrowed in the database by the keys it can use."""
    dicom = Image.objects.filter(study=OuterRef("pk"), file_format=Image.Format.DICOM)
    studies = studies_visible_to(user).filter(Exists(dicom)).select_related("patient").order_by("id")
    uids = _uids(keys, "StudyInstanceUID")
    if uids:
        studies = studies.filter(study_uid__in=uids)
    number, patient_id = _single(keys, "AccessionNumber"), _single(keys, "PatientID")
    if can_see_identity(user):  # else they match nothing the account sees (a pseudonym: after it is computed)
        if number:
            studies = studies.filter(accession_number=number)
        if patient_id:
            studies = studies.filter(patient__patient_id=patient_id)
    date = "".join(_text(keys.get("StudyDate")))
    if re.fullmatch(r"\d{8}", date):
        studies = studies.filter(study_date=dt.datetime.strptime(date, "%Y%m%d").date())
    elif re.fullmatch(r"(\d{8})?-(\d{8})?", date) and date != "-":
        low, _, high = date.partition("-")
        if low:
            studies = studies.filter(study_date__gte=dt.datetime.strptime(low, "%Y%m%d").date())
        if high:
            studies = studies.filter(study_date__lte=dt.datetime.strptime(high, "%Y%m%d").date())
    found = list(studies[: MAX_STUDIES + 1])
    if len(found) > MAX_STUDIES:
        raise QueryError(OUT_OF_RESOURCES, f"over {MAX_STUDIES} studies match: narrow the query")
    return found


def _keep(attributes: dict[str, object], keys: dict, skip: set[str] = frozenset()) -> bool:
    """Every key the identifier gives a value, and that this level holds, matches."""
    for keyword, wanted in keys.items():
        if keyword in NOT_MATCHING_KEYS or keyword in skip or keyword not in attributes:
            continue
        if not matches(keyword, wanted, attributes[keyword]):
            return False
    return True


def entities(user, level: str, keys: dict, *, patient_root: bool) -> Iterator[Entity]:
    """The matches of an identifier at a level, as `user` sees them."""
    if level not in LEVELS or (level == "PATIENT" and not patient_root):
        raise QueryError(IDENTIFIER_DOES_NOT_MATCH, f"QueryRetrieveLevel {level or '(none)'} is not supported here")
    if level in ("SERIES", "IMAGE") and not _uids(keys, "StudyInstanceUID"):
        raise QueryError(IDENTIFIER_DOES_NOT_MATCH, f"{level} level needs the StudyInstanceUID")
    studies = [held for held in load(_studies(user, keys), user) if held.instances]
    if level == "PATIENT":
        by_patient: dict[int, list[Held]] = {}
        for held in studies:
            by_patient.setdefault(held.study.patient_id, []).append(held)
        for group in by_patient.values():
            attributes = _patient_attributes(group[0], user)
            if not _keep(attributes, keys):
                continue
            attributes.update(
                NumberOfPatientRelatedStudies=len(group),
                NumberOfPatientRelatedSeries=sum(len(held.series()) for held in group),
                NumberOfPatientRelatedInstances=sum(len(held.instances) for held in group),
            )
            yield Entity(attributes, [(held.study, i) for held in group for i in held.instances])
        return
    for held in studies:
        study = held.study
        study_attributes = _study_attributes(held, user)
        if not _keep(study_attributes, keys):
            continue
        if level == "STUDY":
            yield Entity(study_attributes, [(study, i) for i in held.instances])
            continue
        parent = {k: study_attributes[k] for k in ("StudyInstanceUID", "PatientID", "PatientName")}
        for uid, group in held.series().items():
            series_attributes = {**parent, **_series_attributes(held, uid, group)}
            if not _keep(series_attributes, keys):
                continue
            if level == "SERIES":
                yield Entity(series_attributes, [(study, i) for i in group])
                continue
            for instance in group:
                attributes = {**parent, **_instance_attributes(held, instance)}
                if _keep(attributes, keys):
                    yield Entity(attributes, [(study, instance)])


def response(entity: Entity, identifier: Dataset, level: str, ae_title: str) -> Dataset:
    """A C-FIND match: the identifier's keys with this entity's values (empty where the portal has none)."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    for element in identifier:
        keyword = element.keyword
        if not keyword or keyword == "SpecificCharacterSet":
            continue
        if keyword == "QueryRetrieveLevel":
            value = level
        elif keyword == "RetrieveAETitle":
            value = ae_title
        elif element.VR == "SQ":
            setattr(ds, keyword, [])
            continue
        else:
            value = entity.value(keyword)
        setattr(ds, keyword, value if value not in (None, "") else None)
    if "QueryRetrieveLevel" not in ds:
        ds.QueryRetrieveLevel = level
    return ds
