"""The Query/Retrieve information model over the portal's data: patients, studies, series and instances
(images and the portal's SRs) as one portal account sees them over DICOMweb, and C-FIND matching.

The same reads as DICOMweb (screening/dicom/web/common.py): `studies_visible_to` decides which studies,
the study's instances are its DICOM images and its stored SRs, and a viewer who may not see patient
identity sees its pseudonym as PatientID and no name or birth date. Matching follows PS3.4 C.2.2.2:
universal (empty), single value, wildcard (* and ?; person names case-insensitively), UID list and
date/time range. An attribute the portal does not hold is returned empty and never narrows a search.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from django.db.models import Exists, OuterRef
from pydicom import Dataset
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.uid import Comprehensive3DSRStorage

from .. import selectors
from ..models import Image, Study
from ..roles import can_see_identity
from . import sr
from .web.common import Instance, Report, instance_series, modality, patient, series_number, sop_class
from .web.common import study_instances as _all_instances

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


@dataclass
class Entity:
    """One match: its attributes (values or callables computed when asked for) and what it holds."""

    attributes: dict[str, object]
    studies: list[Study]
    instances: Callable[[], list[tuple[Study, Instance]]] = field(repr=False)

    def value(self, keyword: str):
        value = self.attributes.get(keyword, "")
        return value() if callable(value) else value


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


def instances_of(study: Study) -> list[Instance]:
    """A study's retrievable instances: its DICOM images (not pictures uploaded as PNG or JPEG) and its SRs."""
    return [i for i in _all_instances(study) if isinstance(i, Report) or i.file_format == Image.Format.DICOM]


def _patient_attributes(study: Study, user) -> dict[str, object]:
    patient_id, name = patient(study, user)
    birth = _date(study.patient.birth_date) if can_see_identity(user) else ""
    return {"PatientID": patient_id, "PatientName": name, "PatientBirthDate": birth, "PatientSex": study.patient.sex}


def _series_of(members: list[Instance]) -> dict[str, list[Instance]]:
    series: dict[str, list[Instance]] = {}
    for instance in members:
        series.setdefault(instance_series(instance), []).append(instance)
    return series


def _kind(instance: Instance) -> str:
    return "SR" if isinstance(instance, Report) else modality(instance)


def _study_attributes(study: Study, user, members: Callable[[], list[Instance]]) -> dict[str, object]:
    return {
        **_patient_attributes(study, user),
        "StudyInstanceUID": study.study_uid,
        "StudyDate": _date(study.study_date),
        "AccessionNumber": study.accession_number,
        "ModalitiesInStudy": lambda: sorted({_kind(i) for i in members()}),
        "NumberOfStudyRelatedSeries": lambda: len(_series_of(members())),
        "NumberOfStudyRelatedInstances": lambda: len(members()),
    }


def _series_attributes(study: Study, uid: str, members: list[Instance]) -> dict[str, object]:
    first = members[0]
    return {
        "StudyInstanceUID": study.study_uid,
        "SeriesInstanceUID": uid,
        "Modality": _kind(first),
        "SeriesNumber": first.series_number if isinstance(first, Report) else series_number(first),
        "SeriesDescription": sr.SERIES_DESCRIPTIONS[first.kind] if isinstance(first, Report) else "",
        "NumberOfSeriesRelatedInstances": len(members),
    }


def _instance_attributes(study: Study, instance: Instance) -> dict[str, object]:
    common = {
        "StudyInstanceUID": study.study_uid,
        "SeriesInstanceUID": instance_series(instance),
        "SOPInstanceUID": instance.sop_uid,
        "Modality": _kind(instance),
    }
    if isinstance(instance, Report):
        return {**common, "SOPClassUID": Comprehensive3DSRStorage, "InstanceNumber": instance.number}
    return {
        **common,
        "SOPClassUID": sop_class(instance),
        "InstanceNumber": instance.pk,
        "Rows": instance.rows,
        "Columns": instance.columns,
        "ImageLaterality": instance.laterality if instance.laterality in ("L", "R") else "",
        "ViewPosition": instance.view if instance.view in ("CC", "MLO") else "",
    }


def _studies(user, keys: dict) -> list[Study]:
    """The visible studies with a retrievable instance, narrowed in the database by the keys it can use."""
    dicom = Image.objects.filter(study=OuterRef("pk"), file_format=Image.Format.DICOM)
    studies = selectors.studies_visible_to(user).filter(Exists(dicom)).select_related("patient").order_by("id")
    uids = _uids(keys, "StudyInstanceUID")
    if uids:
        studies = studies.filter(study_uid__in=uids)
    accession = _single(keys, "AccessionNumber")
    if accession:
        studies = studies.filter(accession_number=accession)
    patient_id = _single(keys, "PatientID")
    if patient_id and can_see_identity(user):  # a pseudonym is matched after it is computed
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
        raise QueryError(UNABLE_TO_PROCESS, f"over {MAX_STUDIES} studies match: narrow the query")
    return found


def _keep(attributes: dict[str, object], keys: dict, skip: set[str] = frozenset()) -> bool:
    """Every key the identifier gives a value, and that this level holds, matches."""
    for keyword, wanted in keys.items():
        if keyword in NOT_MATCHING_KEYS or keyword in skip or keyword not in attributes:
            continue
        held = attributes[keyword]
        if not matches(keyword, wanted, held() if callable(held) else held):
            return False
    return True


def entities(user, level: str, keys: dict, *, patient_root: bool) -> Iterator[Entity]:
    """The matches of an identifier at a level, as `user` sees them."""
    if level not in LEVELS or (level == "PATIENT" and not patient_root):
        raise QueryError(IDENTIFIER_DOES_NOT_MATCH, f"QueryRetrieveLevel {level or '(none)'} is not supported here")
    if level in ("SERIES", "IMAGE") and not _uids(keys, "StudyInstanceUID"):
        raise QueryError(IDENTIFIER_DOES_NOT_MATCH, f"{level} level needs the StudyInstanceUID")
    studies = _studies(user, keys)
    if level == "PATIENT":
        by_patient: dict[int, list[Study]] = {}
        for study in studies:
            by_patient.setdefault(study.patient_id, []).append(study)
        for group in by_patient.values():
            attributes = _patient_attributes(group[0], user)
            if not _keep(attributes, keys):
                continue

            def held(group=group) -> list[tuple[Study, Instance]]:
                return [(s, i) for s in group for i in instances_of(s)]

            attributes.update(
                NumberOfPatientRelatedStudies=len(group),
                NumberOfPatientRelatedSeries=lambda held=held: len({instance_series(i) for _, i in held()}),
                NumberOfPatientRelatedInstances=lambda held=held: len(held()),
            )
            yield Entity(attributes, group, held)
        return
    for study in studies:
        cache: list[list[Instance]] = []

        def members(study=study, cache=cache) -> list[Instance]:
            if not cache:
                cache.append(instances_of(study))
            return cache[0]

        study_attributes = _study_attributes(study, user, members)
        if not _keep(study_attributes, keys):
            continue
        if level == "STUDY":
            held = lambda study=study, members=members: [(study, i) for i in members()]  # noqa: E731
            yield Entity(study_attributes, [study], held)
            continue
        parent = {k: study_attributes[k] for k in ("StudyInstanceUID", "PatientID", "PatientName")}
        for uid, group in _series_of(members()).items():
            series_attributes = {**parent, **_series_attributes(study, uid, group)}
            if not _keep(series_attributes, keys):
                continue
            if level == "SERIES":
                yield Entity(series_attributes, [study], lambda study=study, group=group: [(study, i) for i in group])
                continue
            for instance in group:
                attributes = {**parent, **_instance_attributes(study, instance)}
                if _keep(attributes, keys):
                    yield Entity(attributes, [study], lambda study=study, instance=instance: [(study, instance)])


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
