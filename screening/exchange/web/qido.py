"""QIDO-RS (PS3.18 10.6): search for studies, and for the series and instances of one study.

Each level answers the attributes PS3.18 table 10.6.3-3 requires and those viewers expect (OHIF's
study list: StudyDescription, StudyTime, ...), with RetrieveURL; `includefield` adds those of the levels
above (a series search can carry its study's PatientName), `includefield=all` everything. Matching
(PS3.4 C.2.2.2): a single value, a UID list, a date range, and `*`/`?` wildcards on PatientName (PN),
PatientID (LO) and AccessionNumber; `fuzzymatching=true` makes PN and LO matching case-insensitive and
lets a name match from the start of any of its components. PatientName is answered as stored in the
original, with its `^` separators. A key the portal cannot match is ignored and named in a `Warning`
header (PS3.18 8.3.5.1), never silently treated as matched.
"""

from __future__ import annotations

import datetime as dt
import re
from urllib.parse import quote

from django.db.models import Q
from django.urls import reverse
from django.utils.http import RFC3986_SUBDELIMS
from pydicom.datadict import keyword_for_tag, tag_for_keyword

from screening.accounts.roles import can_see_identity
from screening.blinding import AIVisibility, ai_visibility
from screening.errors import PortalError
from screening.exchange import sr
from screening.exchange.web.common import (
    DicomWebView,
    Instance,
    Report,
    StowThrottled,
    accession,
    dataset,
    dicom_json,
    header_facts,
    instance_attributes,
    modality,
    paging,
    patient,
    reports,
    series_number,
    study_or_404,
)
from screening.exchange.web.stow import stow
from screening.exchange.web.summary import Summary, summaries, summarise, with_fingerprint
from screening.intake.selectors import studies_visible_to
from screening.models import DicomExport, Image, Study

_DATE = re.compile(r"^(\d{8})?(-)?(\d{8})?$")
_VALUE_LIMIT = 1024  # a UID list may be long; a name or an id is at most 64 characters a component
_CONTROL = {"limit", "offset", "includefield", "fuzzymatching"}
STUDY_KEYS = {
    "StudyInstanceUID",
    "PatientID",
    "PatientName",
    "PatientSex",
    "StudyDate",
    "AccessionNumber",
    "ModalitiesInStudy",
}
SERIES_KEYS = {"SeriesInstanceUID", "Modality", "SeriesNumber", "StudyInstanceUID"}
INSTANCE_KEYS = {"SOPInstanceUID", "SOPClassUID", "InstanceNumber", "SeriesInstanceUID", "StudyInstanceUID"}


class Query:
    """A QIDO request's matching keys (by keyword), includefield and fuzzymatching; the keys the level
    cannot match are kept for the Warning header."""

    def __init__(self, request, supported: set[str]):
        self.keys: dict[str, str] = {}
        self.include: set[str] = set()
        self.unsupported: list[str] = []
        self.fuzzy = request.query_params.get("fuzzymatching", "").lower() == "true"
        for name, values in request.query_params.lists():
            if name in _CONTROL:
                if name == "includefield":
                    for value in values:
                        self.include.update(_keyword(v) or v for v in re.split(r"[,\s]+", value) if v)
                continue
            keyword = _keyword(name)
            value = re.sub(r"\*+", "*", (values[-1] if values else "").strip())  # "a**b" is "a*b"
            if len(value) > _VALUE_LIMIT:
                raise PortalError(f"{name}: a query value is at most {_VALUE_LIMIT} characters", status=400)
            if keyword in supported:
                if value and value != "*":  # "*" alone matches everything, as does an empty value
                    self.keys[keyword] = value
            else:
                self.unsupported.append(name)

    def wants(self, keyword: str) -> bool:
        return "all" in self.include or keyword in self.include

    def answer(self, rows: list[dict]):
        response = dicom_json(rows)
        if self.unsupported:
            names = ", ".join(sorted(set(self.unsupported)))
            response["Warning"] = f'299 portal "The following query keys are not supported and were ignored: {names}"'
        return response


def _keyword(name: str) -> str:
    """A query key's keyword, whether given by keyword or by tag (0020000D)."""
    if re.fullmatch(r"[0-9A-Fa-f]{8}", name):
        return keyword_for_tag(int(name, 16)) or name
    return name


def _pattern(value: str) -> str:
    """A DICOM wildcard value as a regular expression body (`*` any run, `?` one character)."""
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in value)


def text_match(field: str, value: str, *, fuzzy: bool) -> Q:
    """LO/SH matching: exact, or with wildcards; case-insensitive with fuzzymatching."""
    if "*" not in value and "?" not in value:
        return Q(**{f"{field}__iexact" if fuzzy else field: value})
    return Q(**{f"{field}__iregex" if fuzzy else f"{field}__regex": f"^{_pattern(value)}$"})


def name_match(field: str, value: str, *, fuzzy: bool) -> Q:
    """PN matching against the stored name (its components joined by spaces): `Family^Given` finds
    `Family^Given^Middle` (components left out match any), as do `Fam*` and `*given*`; case-insensitive
    (names are written in many cases); fuzzy: from the start of any component."""
    components = [part.strip() for part in value.split("=")[0].rstrip("^").split("^")]
    if not any(components):
        return Q()
    body = " +".join(_pattern(part) if part else "[^ ]*" for part in components)
    if fuzzy:
        return Q(**{f"{field}__iregex": f"(^| ){body}"})
    return Q(**{f"{field}__iregex": f"^{body}( .*)?$"})


def _date(text: str) -> dt.date:
    try:
        return dt.datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        raise PortalError(f"StudyDate {text!r} is not YYYYMMDD", code="invalid", status=400) from None


def _uids(value: str) -> list[str]:
    return [u for u in re.split(r"[,\\]", value) if u]


def _filter_studies(studies, query: Query, user, visibility: AIVisibility):
    keys = query.keys
    identifying = {"PatientID", "PatientName", "AccessionNumber", "PatientBirthDate"} & set(keys)
    if identifying and not can_see_identity(user):
        raise PortalError(
            "searching by PatientID, PatientName, AccessionNumber or PatientBirthDate needs the right to see "
            "patient identity",
            code="forbidden",
            status=403,
        )
    if "PatientID" in keys:
        studies = studies.filter(text_match("patient__patient_id", keys["PatientID"], fuzzy=query.fuzzy))
    if "PatientName" in keys:
        studies = studies.filter(name_match("patient__name", keys["PatientName"], fuzzy=query.fuzzy))
    if "PatientSex" in keys:
        studies = studies.filter(patient__sex=keys["PatientSex"].upper())
    if "StudyInstanceUID" in keys:
        studies = studies.filter(study_uid__in=_uids(keys["StudyInstanceUID"]))
    if "AccessionNumber" in keys:
        studies = studies.filter(text_match("accession_number", keys["AccessionNumber"], fuzzy=query.fuzzy))
    if "StudyDate" in keys:
        match = _DATE.match(keys["StudyDate"])
        if not match or not (match.group(1) or match.group(3)):
            raise PortalError("StudyDate must be YYYYMMDD or YYYYMMDD-YYYYMMDD", code="invalid", status=400)
        start, dash, end = match.groups()
        if start and not dash:
            studies = studies.filter(study_date=_date(start))
        else:
            if start:
                studies = studies.filter(study_date__gte=_date(start))
            if end:
                studies = studies.filter(study_date__lte=_date(end))
    wanted = {m for m in re.split(r"[,\\]", keys.get("ModalitiesInStudy", "").upper()) if m}
    if wanted:
        formats = []
        if "MG" in wanted:
            formats.append(Image.Format.DICOM)
        if "OT" in wanted:
            formats.extend(f for f in Image.Format.values if f != Image.Format.DICOM)
        having = Q(images__file_format__in=formats)
        if "SR" in wanted:  # an SR the portal wrote and stored, and the viewer may see (screening.blinding)
            stored = Q(exports__sr_file__gt="")
            if visibility.hides_any:
                stored &= Q(exports__kind=DicomExport.Kind.DECISION) | visibility.condition()
            having |= stored
        studies = studies.filter(having).distinct()
    return studies


def retrieve_urls(request):
    """The RetrieveURL of a study by its UID: what reverse("dicomweb-study") gives, with one reverse a page."""
    prefix = request.build_absolute_uri(reverse("dicomweb-studies")) + "/"
    return lambda uid: prefix + quote(uid, safe=RFC3986_SUBDELIMS + "/~:@")


def study_attributes(request, study: Study, summary: Summary, srs: list[Report], retrieve_url=None) -> dict:
    """A study's QIDO attributes, from its images' summary and the SRs this viewer may see."""
    retrieve_url = retrieve_url or retrieve_urls(request)
    header = summary.header
    patient_id, patient_name = patient(study, request.user)
    identity = can_see_identity(request.user)
    birth_date = study.patient.birth_date if identity else None
    if identity and header.get("PatientName"):
        patient_name = header["PatientName"]  # as stored, with its ^ separators
    return dataset(
        StudyInstanceUID=study.study_uid,
        StudyDate=study.study_date.strftime("%Y%m%d") if study.study_date else "",
        StudyTime=header.get("StudyTime", ""),
        # StudyID, StudyDescription, the accession and the referring physician can name the woman or say
        # where her exam was asked for: only for viewers who may see identity.
        StudyID=header.get("StudyID", "") if identity else "",
        StudyDescription=header.get("StudyDescription", "") if identity else "",
        AccessionNumber=accession(study, request.user),
        ReferringPhysicianName=header.get("ReferringPhysicianName", "") if identity else "",
        InstanceAvailability="ONLINE",
        PatientID=patient_id,
        PatientName=patient_name,
        PatientBirthDate=birth_date.strftime("%Y%m%d") if birth_date else "",
        PatientSex=study.patient.sex,
        ModalitiesInStudy=sorted(summary.modalities | ({"SR"} if srs else set())),
        NumberOfStudyRelatedSeries=len(summary.series | {report.series for report in srs}),
        NumberOfStudyRelatedInstances=summary.images + len(srs),
        RetrieveURL=retrieve_url(study.study_uid),
    )


class _Study:
    """A study with its images, SRs and header facts: what every level's attributes are made of."""

    def __init__(self, study: Study, images: list[Image], srs: list[Report], facts: dict[int, dict[str, str]]):
        self.study, self.images, self.srs, self.facts = study, images, srs, facts

    def series_of(self, instance: Instance) -> str:
        return instance.series if isinstance(instance, Report) else self.facts[instance.pk]["SeriesInstanceUID"]

    def instances(self) -> list[Instance]:
        return [*self.images, *self.srs]

    def attributes(self, request) -> dict:
        return study_attributes(request, self.study, summarise(self.images, self.facts), self.srs)

    def series(self) -> dict[str, list[Instance]]:
        found: dict[str, list[Instance]] = {}
        for instance in self.instances():
            found.setdefault(self.series_of(instance), []).append(instance)
        return found

    def series_attributes(self, request, uid: str, members: list[Instance]) -> dict:
        first = members[0]
        if isinstance(first, Report):
            kind, number = "SR", first.series_number
            description = sr.SERIES_DESCRIPTIONS[first.kind]
        else:
            facts = self.facts[first.pk]
            kind, description = modality(first), facts["SeriesDescription"]
            number = int(facts["SeriesNumber"]) if facts["SeriesNumber"].isdigit() else series_number(first)
        return dataset(
            StudyInstanceUID=self.study.study_uid,
            SeriesInstanceUID=uid,
            Modality=kind,
            SeriesNumber=number,
            SeriesDescription=description,
            NumberOfSeriesRelatedInstances=len(members),
            RetrieveURL=request.build_absolute_uri(reverse("dicomweb-series", args=[self.study.study_uid, uid])),
        )

    def instance_attributes(self, request, instance: Instance) -> dict:
        facts = None if isinstance(instance, Report) else self.facts[instance.pk]
        attributes = instance_attributes(instance, facts)
        dicom = isinstance(instance, Report) or instance.file_format == Image.Format.DICOM
        if dicom:  # an uploaded picture has no DICOM instance to retrieve
            url = reverse("dicomweb-instance", args=[self.study.study_uid, self.series_of(instance), instance.sop_uid])
            attributes.update(dataset(RetrieveURL=request.build_absolute_uri(url)))
        return attributes


def _load(studies: list[Study], viewer) -> list[_Study]:
    images: dict[int, list[Image]] = {s.pk: [] for s in studies}
    for image in Image.objects.filter(study__in=studies).select_related("study").order_by("laterality", "view", "id"):
        images[image.study_id].append(image)
    srs = reports(studies, viewer=viewer)  # no AI-result SR the reading policy hides from this viewer
    facts = header_facts([image for members in images.values() for image in members])
    return [_Study(study, images[study.pk], srs[study.pk], facts) for study in studies]


def _with(base: dict, extra: dict, query: Query) -> dict:
    """`base` plus what includefield asks for from `extra` (the attributes of the levels above)."""
    for keyword in query.include if "all" not in query.include else ():
        tag = tag_for_keyword(keyword)
        key = f"{tag:08X}" if tag is not None else None
        if key in extra and key not in base:
            base[key] = extra[key]
    if "all" in query.include:
        base = {**extra, **base}
    return base


class StudiesView(StowThrottled):
    """GET: QIDO-RS search for studies. POST: STOW-RS."""

    def get(self, request):
        """A constant number of queries whatever the page holds (tests/portal/test_dicomweb_qido.py): the studies
        with their images' fingerprints, their SRs, and the images of the studies whose summary is not cached."""
        query = Query(request, STUDY_KEYS)
        visibility = ai_visibility(request.user)
        studies = _filter_studies(studies_visible_to(request.user).order_by("-id"), query, request.user, visibility)
        limit, offset = paging(request)
        # The page's keys first, its rows then: the annotations (blinding, the images' fingerprint) are computed
        # for the page's rows only, not for the rows an offset skips.
        page = Study.objects.filter(pk__in=studies.values("pk")[offset : offset + limit])
        page = list(with_fingerprint(visibility.annotate(page)).select_related("patient").order_by("-id"))
        found = summaries(page)
        srs = reports(page, viewer=request.user, visibility=visibility)
        url = retrieve_urls(request)
        return query.answer([study_attributes(request, s, found[s.pk], srs[s.pk], url) for s in page])

    def post(self, request, study=None):
        return stow(request, study)


def _one_study(request, study_uid: str) -> _Study:
    return _load([study_or_404(request.user, study_uid)], request.user)[0]


class SeriesSearchView(DicomWebView):
    def get(self, request, study):
        query = Query(request, SERIES_KEYS)
        found = _one_study(request, study)
        study_attributes = found.attributes(request) if query.include else {}
        wanted_modality = query.keys.get("Modality", "").upper()
        rows = []
        for uid, members in found.series().items():
            attributes = found.series_attributes(request, uid, members)
            if "SeriesInstanceUID" in query.keys and uid not in _uids(query.keys["SeriesInstanceUID"]):
                continue
            if wanted_modality and attributes["00080060"]["Value"][0] != wanted_modality:
                continue
            if "SeriesNumber" in query.keys and str(attributes["00200011"]["Value"][0]) != query.keys["SeriesNumber"]:
                continue
            rows.append(_with(attributes, study_attributes, query))
        limit, offset = paging(request)
        return query.answer(rows[offset : offset + limit])


class InstanceSearchView(DicomWebView):
    def get(self, request, study, series=None):
        query = Query(request, INSTANCE_KEYS)
        found = _one_study(request, study)
        above = found.attributes(request) if query.include else {}
        series = series or query.keys.get("SeriesInstanceUID")
        rows = []
        for uid, members in found.series().items():
            if series is not None and uid not in _uids(series):
                continue
            series_attributes = found.series_attributes(request, uid, members) if query.include else {}
            for instance in members:
                if "SOPInstanceUID" in query.keys and instance.sop_uid not in _uids(query.keys["SOPInstanceUID"]):
                    continue
                attributes = found.instance_attributes(request, instance)
                if "SOPClassUID" in query.keys and attributes["00080016"]["Value"][0] != query.keys["SOPClassUID"]:
                    continue
                number = query.keys.get("InstanceNumber")
                if number and str(attributes["00200013"]["Value"][0]) != number:
                    continue
                rows.append(_with(attributes, {**above, **series_attributes}, query))
        limit, offset = paging(request)
        return query.answer(rows[offset : offset + limit])
