"""Research export writes: projects, export requests (audited: who, what, why), the background build
(de-identification, labels, manifest, a self-check scan, a zip) and the one download."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import re
import secrets
import tempfile
import uuid
import zipfile
from datetime import date, timedelta
from pathlib import Path

import dicognito
import pydicom
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.utils import timezone
from pydicom.dataset import Dataset

from screening import dispatch
from screening.audit import actions
from screening.audit.services import record_event
from screening.errors import Conflict, PortalError
from screening.models import Image, ResearchExport, ResearchProject, Study
from screening.reading.selectors import breast_outcomes
from screening.research_export import selectors
from screening.research_export.deidentify import Options, burned_in_reason, deidentify, source_identifiers
from screening.research_export.selectors import OUTCOMES, READINGS, Selection

log = logging.getLogger(__name__)

BUILD_TASK = "screening.research_export.tasks.build_export"
# An export still queued or running this long after it was asked for is dead (the task's hard limit is 6 h).
STALE_AFTER = timedelta(hours=7)
LABEL_COLUMNS = (
    "subject_id",
    "study_uid",
    "laterality",
    "age",
    "density",
    "reading_decision",
    "birads",
    "outcome",
    "cancer_type",
    "ai_breast_score",
    "images",
)


# --- projects and requests -----------------------------------------------------------------------


def create_project(*, name: str, user, ip_address: str | None = None) -> ResearchProject:
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise PortalError("a project needs a name of 1 to 100 characters", field="name")
    try:
        with transaction.atomic():
            project = ResearchProject.objects.create(name=name, key=secrets.token_hex(32), created_by=user)
            record_event(
                action=actions.RESEARCH_PROJECT_CREATE,
                user=user,
                obj=project,
                ip_address=ip_address,
                detail={"name": name},
            )
    except IntegrityError:
        raise Conflict(f"a project named {name!r} exists already", field="name") from None
    return project


def _number(raw, name: str) -> float | None:
    if raw in (None, ""):
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise PortalError(f"{name} must be a number between 0 and 1", field=name) from None
    if not 0 <= value <= 1:
        raise PortalError(f"{name} must be a number between 0 and 1", field=name)
    return value


def _day(raw, name: str) -> date | None:
    if raw in (None, ""):
        return None
    try:
        return date.fromisoformat(str(raw))
    except ValueError:
        raise PortalError(f"{name} must be a date as YYYY-MM-DD", field=name) from None


def parse_selection(data: dict) -> Selection:
    """The admin's filters, checked; a bad one is a PortalError naming its field."""
    outcome, reading = str(data.get("outcome") or ""), str(data.get("reading") or "")
    if outcome and outcome not in OUTCOMES:
        raise PortalError(f"outcome must be one of {', '.join(OUTCOMES)}", field="outcome")
    if reading and reading not in READINGS:
        raise PortalError(f"reading must be one of {', '.join(READINGS)}", field="reading")
    selection = Selection(
        site=str(data.get("site") or "").strip()[:64],
        date_from=_day(data.get("date_from"), "date_from"),
        date_to=_day(data.get("date_to"), "date_to"),
        outcome=outcome,
        score_min=_number(data.get("score_min"), "score_min"),
        score_max=_number(data.get("score_max"), "score_max"),
        reading=reading,
    )
    if selection.date_from and selection.date_to and selection.date_from > selection.date_to:
        raise PortalError("date_from is after date_to", field="date_from")
    return selection


def _flag(data: dict, name: str, default: bool) -> bool:
    raw = data.get(name, default)
    if isinstance(raw, bool):
        return raw
    if str(raw).lower() in ("1", "true", "on", "yes"):
        return True
    if str(raw).lower() in ("0", "false", "off", "no", ""):
        return False
    raise PortalError(f"{name} must be true or false", field=name)


def parse_options(data: dict) -> dict:
    return {
        "retain_dates": _flag(data, "retain_dates", True),
        "retain_patient_characteristics": _flag(data, "retain_patient_characteristics", True),
        "retain_device_identity": _flag(data, "retain_device_identity", False),
        "include_burned_in": _flag(data, "include_burned_in", False),
    }


def request_export(
    *, project: ResearchProject, user, reason: str, filters: dict, options: dict, ip_address: str | None = None
) -> ResearchExport:
    """Queue an export (audited: who, what, why). Nothing is selected or written until the worker runs."""
    reason = (reason or "").strip()
    if len(reason) < 10:
        raise PortalError("say why the data leave the portal (at least 10 characters)", field="reason")
    selection = parse_selection(filters)
    chosen = parse_options(options)
    if not selectors.selected_studies(selection):
        raise PortalError("no study matches these filters", field="filters")
    with transaction.atomic():
        export = ResearchExport.objects.create(
            project=project, requested_by=user, reason=reason[:2000], filters=selection.to_dict(), options=chosen
        )
        record_event(
            action=actions.RESEARCH_EXPORT_REQUEST,
            user=user,
            obj=export,
            ip_address=ip_address,
            detail={"project": project.name, "filters": export.filters, "options": chosen, "reason": export.reason},
        )
        dispatch.after_commit(BUILD_TASK, export.pk)
    return export


# --- the build -------------------------------------------------------------------------------------


def _pseudonyms(key: str, patient_id: str, study_uid: str) -> tuple[str, str]:
    """The new PatientID and StudyInstanceUID the DICOM files get, for the labels CSV (same key, same values)."""
    from dicognito.anonymizer import Anonymizer

    ds = Dataset()
    ds.PatientID, ds.StudyInstanceUID = patient_id, study_uid
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    Anonymizer(seed=key).anonymize(ds)
    return str(ds.PatientID), str(ds.StudyInstanceUID)


def _portal_identifiers(study: Study) -> set[str]:
    patient = study.patient
    found = {patient.patient_id, study.study_uid, study.accession_number}
    found |= {part for part in patient.name.replace("^", " ").split() if len(part) >= 3}
    if patient.birth_date:
        found.add(patient.birth_date.strftime("%Y%m%d"))
    found |= {image.sop_uid for image in study.images.all()}
    return {f for f in found if f and len(f) >= 3}


# What this module writes into every file (code meanings such as "Retain Patient Characteristics Option"):
# not scanned, so a woman named Patient or Device does not stop every export.
OWN_ELEMENTS = ("PixelData", "DeidentificationMethod", "DeidentificationMethodCodeSequence")


def _holds(text: str, identifier: str) -> bool:
    """A name (letters only) counts as a whole word, so a woman called Hol does not match "Hologic"; IDs,
    dates and UIDs count anywhere."""
    if identifier.isalpha():
        return re.search(rf"(?<![^\W\d_]){re.escape(identifier)}(?![^\W\d_])", text) is not None
    return identifier in text


def _leaks(ds: Dataset, identifiers: set[str]) -> list[str]:
    """Which source identifiers the exported dataset still holds: every element's value at every depth (file
    meta and private elements included) and the encoded bytes of the whole header."""
    header = Dataset()
    for element in ds:
        if element.keyword not in OWN_ELEMENTS:
            header.add(element)
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, header, implicit_vr=False, little_endian=True)
    texts = [buffer.getvalue().decode("latin-1")]
    texts += [str(e.value) for e in header.iterall()] + [str(e.value) for e in ds.file_meta]
    return sorted(i for i in identifiers if any(_holds(t, i) for t in texts))


def _age(study: Study) -> int | None:
    born, day = study.patient.birth_date, study.study_date or timezone.localtime(study.created).date()
    if not born:
        return None
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def release_stale_exports() -> int:
    """Fail exports a dead worker or a lost message left queued or running (called when exports are listed)."""
    stale = ResearchExport.objects.filter(
        status__in=[ResearchExport.Status.QUEUED, ResearchExport.Status.RUNNING],
        created__lt=timezone.now() - STALE_AFTER,
    )
    ids = list(stale.values_list("pk", flat=True))
    for export_id in ids:
        fail_export(export_id, "abandoned: its worker stopped or the queue lost it")
    return len(ids)


def _claim(export_id: int) -> ResearchExport | None:
    claimed = ResearchExport.objects.filter(pk=export_id, status=ResearchExport.Status.QUEUED).update(
        status=ResearchExport.Status.RUNNING
    )
    return ResearchExport.objects.select_related("project").get(pk=export_id) if claimed else None


def build_export(export_id: int) -> str:
    """Build one export: de-identify every selected image, write labels.csv and manifest.json, check every file
    for the source's identifiers, zip it into storage. Any leak or error fails the export and keeps nothing."""
    export = _claim(export_id)
    if export is None:
        return "not queued"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            name = _build(export, Path(tmp))
    except PortalError as exc:
        fail_export(export_id, exc.message)
        return "failed"
    record_event(action=actions.RESEARCH_EXPORT_DONE, obj=export, detail=export.summary)
    return name


def _build(export: ResearchExport, tmp: Path) -> str:
    key, options = export.project.key, export.options
    deid = Options(
        retain_dates=options["retain_dates"],
        retain_patient_characteristics=options["retain_patient_characteristics"],
        retain_device_identity=options["retain_device_identity"],
    )
    ids = selectors.selected_studies(Selection.from_dict(export.filters))
    studies = selectors.studies_with_images(ids)
    finals = selectors.final_reads(ids)
    outcomes, types = breast_outcomes(ids), selectors.cancer_types(ids)
    total = sum(len(s.images.all()) for s in studies)
    files, left_out, labels, done = [], [], [], 0
    archive_path = tmp / "export.zip"
    with zipfile.ZipFile(archive_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for study in studies:
            identifiers = _portal_identifiers(study)
            subject, new_study = _pseudonyms(key, study.patient.patient_id, study.study_uid)
            per_breast: dict[str, int] = {"L": 0, "R": 0}
            for image in selectors.dicom_images(study):
                done += 1
                entry = _export_image(image, key, deid, options, identifiers, archive)
                if "path" in entry:
                    files.append(entry)
                    per_breast[image.laterality] = per_breast.get(image.laterality, 0) + 1
                else:
                    left_out.append({"study_uid": new_study, **entry})
                ResearchExport.objects.filter(pk=export.pk).update(progress={"done": done, "total": total})
            final = finals.get(study.pk, {})
            for side in ("L", "R"):
                labels.append(
                    {
                        "subject_id": subject,
                        "study_uid": new_study,
                        "laterality": side,
                        "age": _age(study) if deid.retain_patient_characteristics else "",
                        "density": final.get("density", ""),
                        "reading_decision": final.get("decision", ""),
                        "birads": final.get("birads") if final.get("birads") is not None else "",
                        "outcome": outcomes.get((study.pk, side), ""),
                        "cancer_type": types.get((study.pk, side), ""),
                        "ai_breast_score": study.score_left if side == "L" else study.score_right,
                        "images": per_breast.get(side, 0),
                    }
                )
        csv_text = io.StringIO()
        writer = csv.DictWriter(csv_text, fieldnames=LABEL_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in labels:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
        every_identifier = set().union(*(_portal_identifiers(s) for s in studies)) if studies else set()
        leaked = sorted(i for i in every_identifier if _holds(csv_text.getvalue(), i))
        if leaked:
            raise PortalError("the labels would hold a source identifier; nothing was exported")
        archive.writestr("labels.csv", csv_text.getvalue())
        summary = {
            "studies": len(studies),
            "images": len(files),
            "left_out": len(left_out),
            "left_out_burned_in": sum(1 for e in left_out if e["reason"].startswith("pixels may")),
        }
        manifest = {
            "export": export.pk,
            "project": export.project.name,
            "made": timezone.now().isoformat(),
            "profile": "DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile",
            "options": options,
            "deidentification": {"dicognito": dicognito.__version__, "pydicom": pydicom.__version__},
            "filters": export.filters,
            "counts": summary,
            "labels": {"file": "labels.csv", "columns": list(LABEL_COLUMNS), "one_row_per": "breast"},
            "files": files,
            "left_out": left_out,
        }
        archive.writestr("manifest.json", json.dumps(manifest, indent=2))
    with archive_path.open("rb") as fh:
        name = default_storage.save(f"research_exports/{uuid.uuid4().hex}.zip", File(fh))
    try:
        with transaction.atomic():
            updated = ResearchExport.objects.filter(pk=export.pk, status=ResearchExport.Status.RUNNING).update(
                status=ResearchExport.Status.DONE, archive=name, summary=summary, finished=timezone.now()
            )
            if not updated:
                raise PortalError("the export was no longer running")
    except BaseException:
        default_storage.delete(name)
        raise
    export.summary = summary
    return name


def _export_image(image: Image, key: str, deid: Options, options: dict, identifiers: set[str], archive) -> dict:
    """One image into the archive; or why it was left out."""
    if image.file_format != Image.Format.DICOM:
        return {"reason": "not a DICOM file (no header to de-identify)"}
    try:
        with default_storage.open(image.original.name, "rb") as fh:
            ds = pydicom.dcmread(fh, force=True)
    except Exception:  # the file is gone or damaged: its pydicom text could quote patient data
        return {"reason": "the stored original cannot be read"}
    burned = burned_in_reason(ds)
    checks = identifiers | source_identifiers(ds)
    deidentify(ds, key=key, options=deid)
    if burned and not options["include_burned_in"]:
        return {"sop_uid": str(ds.SOPInstanceUID), "reason": f"pixels may carry identity: {burned}"}
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    content = buffer.getvalue()
    if _leaks(ds, checks):
        # Never expected: the de-identification missed something. Stop the whole export rather than ship it.
        raise PortalError("an image kept a source identifier after de-identification; nothing was exported")
    path = f"dicom/{ds.StudyInstanceUID}/{ds.SOPInstanceUID}.dcm"
    archive.writestr(path, content)
    return {
        "path": path,
        "sha256": hashlib.sha256(content).hexdigest(),
        "study_uid": str(ds.StudyInstanceUID),
        "sop_uid": str(ds.SOPInstanceUID),
        "laterality": image.laterality,
        "view": image.view,
        "burned_in_flag": burned,
    }


def fail_export(export_id: int, reason: str) -> None:
    updated = (
        ResearchExport.objects.filter(pk=export_id)
        .exclude(status__in=[ResearchExport.Status.DONE, ResearchExport.Status.DOWNLOADED])
        .update(status=ResearchExport.Status.FAILED, error=reason[:1000], finished=timezone.now())
    )
    if updated:
        record_event(
            action=actions.RESEARCH_EXPORT_FAILED, obj=ResearchExport(pk=export_id), detail={"reason": reason[:300]}
        )


# --- the one download --------------------------------------------------------------------------------


def check_download(*, export: ResearchExport, user) -> None:
    """Whether `user` may download the export now, changing nothing (a HEAD request must not use the download)."""
    if export.requested_by_id != getattr(user, "pk", None):
        raise PortalError("no such export", code="not_found", status=404)
    if export.status != ResearchExport.Status.DONE:
        raise Conflict("this export is not ready, or was downloaded already (each export downloads once)")


def take_download(*, export: ResearchExport, user, ip_address: str | None = None) -> str:
    """The archive's storage name, once, for the admin who asked for the export; the caller streams it and
    deletes it. A second try, or another admin, gets an error (404: it is not theirs to know about)."""
    check_download(export=export, user=user)
    with transaction.atomic():
        taken = ResearchExport.objects.filter(pk=export.pk, status=ResearchExport.Status.DONE).update(
            status=ResearchExport.Status.DOWNLOADED, downloaded=timezone.now()
        )
        if not taken:
            raise Conflict("this export is not ready, or was downloaded already (each export downloads once)")
        record_event(
            action=actions.RESEARCH_EXPORT_DOWNLOAD,
            user=user,
            obj=export,
            ip_address=ip_address,
            detail={"project": export.project.name, **(export.summary or {})},
        )
    return export.archive.name
