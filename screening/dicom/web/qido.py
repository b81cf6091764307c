"""QIDO-RS: search for studies (by PatientID, PatientName, StudyDate range, AccessionNumber,
ModalitiesInStudy), and for the series and instances of one study."""

from __future__ import annotations

import datetime as dt
import re

from django.db.models import Q

from ... import selectors
from ...errors import PortalError
from ...models import Image, Study
from ...roles import can_see_identity
from .common import (
    DicomWebView,
    Instance,
    Report,
    StowThrottled,
    dataset,
    dicom_json,
    instance_attributes,
    instance_series,
    modality,
    paging,
    param,
    patient,
    reports,
    series_number,
    series_uid,
    study_instances,
    study_or_404,
)
from .stow import stow

_DATE = re.compile(r"^(\d{8})?(-)?(\d{8})?$")


def _date(text: str) -> dt.date:
    try:
        return dt.datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        raise PortalError(f"StudyDate {text!r} is not YYYYMMDD", code="invalid", status=400) from None


def _study_attributes(study: Study, user, images: list[Image], srs: list[Report]) -> dict:
    patient_id, patient_name = patient(study, user)
    modalities = {modality(i) for i in images} | ({"SR"} if srs else set())
    return dataset(
        StudyInstanceUID=study.study_uid,
        StudyDate=study.study_date.strftime("%Y%m%d") if study.study_date else "",
        AccessionNumber=study.accession_number,
        PatientID=patient_id,
        PatientName=patient_name,
        ModalitiesInStudy=sorted(modalities),
        NumberOfStudyRelatedSeries=len({series_uid(i) for i in images} | {r.series for r in srs}),
        NumberOfStudyRelatedInstances=len(images) + len(srs),
    )


class StudiesView(StowThrottled):
    """GET: QIDO-RS search for studies. POST: STOW-RS."""

    def get(self, request):
        studies = selectors.studies_visible_to(request.user).select_related("patient").order_by("-id")
        patient_id, patient_name = param(request, "PatientID"), param(request, "PatientName").strip("*")
        if (patient_id or patient_name) and not can_see_identity(request.user):
            raise PortalError(
                "searching by PatientID or PatientName needs the right to see patient identity",
                code="forbidden",
                status=403,
            )
        if patient_id:
            studies = studies.filter(patient__patient_id=patient_id)
        if patient_name:  # OHIF sends *text*: a case-insensitive substring
            studies = studies.filter(patient__name__icontains=patient_name)
        study_uid = param(request, "StudyInstanceUID")
        if study_uid:
            studies = studies.filter(study_uid__in=[u for u in re.split(r"[,\\]", study_uid) if u])
        accession = param(request, "AccessionNumber")
        if accession:
            studies = studies.filter(accession_number=accession)
        date = param(request, "StudyDate")
        if date:
            match = _DATE.match(date)
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
        wanted = {m for m in re.split(r"[,\\]", param(request, "ModalitiesInStudy").upper()) if m}
        if wanted:
            formats = []
            if "MG" in wanted:
                formats.append(Image.Format.DICOM)
            if "OT" in wanted:
                formats.extend(f for f in Image.Format.values if f != Image.Format.DICOM)
            having = Q(images__file_format__in=formats)
            if "SR" in wanted:  # an SR the portal wrote and stored
                having |= Q(exports__sr_file__gt="")
            studies = studies.filter(having).distinct()
        limit, offset = paging(request)
        page = list(studies[offset : offset + limit])
        images: dict[int, list[Image]] = {s.pk: [] for s in page}
        for image in Image.objects.filter(study__in=page).select_related("study").order_by("id"):
            images[image.study_id].append(image)
        srs = reports(page, request.user)
        return dicom_json([_study_attributes(s, request.user, images[s.pk], srs[s.pk]) for s in page])

    def post(self, request, study=None):
        return stow(request, study)


class SeriesSearchView(DicomWebView):
    def get(self, request, study):
        found = study_or_404(request.user, study)
        series: dict[str, list[Instance]] = {}
        for instance in study_instances(found, request.user):
            series.setdefault(instance_series(instance), []).append(instance)
        wanted = param(request, "SeriesInstanceUID")
        wanted_modality = param(request, "Modality").upper()
        rows = []
        for uid, members in series.items():
            first = members[0]
            kind = "SR" if isinstance(first, Report) else modality(first)
            if (wanted and uid != wanted) or (wanted_modality and wanted_modality != kind):
                continue
            rows.append(
                dataset(
                    StudyInstanceUID=found.study_uid,
                    SeriesInstanceUID=uid,
                    Modality=kind,
                    SeriesNumber=first.series_number if isinstance(first, Report) else series_number(first),
                    NumberOfSeriesRelatedInstances=len(members),
                )
            )
        limit, offset = paging(request)
        return dicom_json(rows[offset : offset + limit])


class InstanceSearchView(DicomWebView):
    def get(self, request, study, series=None):
        found = study_or_404(request.user, study)
        found_instances = study_instances(found, request.user)
        if series is not None:
            found_instances = [i for i in found_instances if instance_series(i) == series]
        wanted = param(request, "SOPInstanceUID")
        if wanted:
            found_instances = [i for i in found_instances if i.sop_uid == wanted]
        limit, offset = paging(request)
        return dicom_json([instance_attributes(i) for i in found_instances[offset : offset + limit]])
