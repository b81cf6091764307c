"""Mammogram ingest: one path for the upload page, the REST API and `import_images`.

validate -> render -> store files -> Patient/Study/Image rows in one transaction.
Files saved before a failed transaction are deleted again, so bad input leaves
neither an orphan file nor half a record.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import logging
import uuid
from dataclasses import dataclass
from typing import IO

import numpy as np
import pydicom
from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.utils import timezone
from PIL import Image as PILImage
from pydicom.uid import generate_uid

from ml.io import DecodeError, dicom_to_float, image_to_float

from ..errors import PortalError, TooLarge, UnsupportedMedia
from ..models import Image, Patient, Study
from .audit import record_event

log = logging.getLogger(__name__)

MG_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.1.2": "Digital Mammography X-Ray Image Storage - For Presentation",
    "1.2.840.10008.5.1.4.1.1.1.2.1": "Digital Mammography X-Ray Image Storage - For Processing",
}
_IMAGE_FORMATS = {"PNG": "png", "JPEG": "jpeg", "TIFF": "tiff", "PPM": "pgm"}
_VIEW_WORDS = (
    ("cranio-caudal", "CC"),
    ("craniocaudal", "CC"),
    ("medio-lateral oblique", "MLO"),
    ("mediolateral oblique", "MLO"),
)
# SNOMED / SRT codes for the two screening views (PS3.16 CID 4014).
_VIEW_CODES = {"R-10242": "CC", "399162004": "CC", "R-10226": "MLO", "399368009": "MLO"}


@dataclass(frozen=True)
class IngestResult:
    image: Image
    created: bool


@dataclass
class _Parsed:
    """Everything validated and decoded, ready to be written."""

    file_format: str
    pixels: np.ndarray
    sop_uid: str
    study_uid: str
    uid_generated: bool
    patient_id: str
    patient_name: str = ""
    birth_date: dt.date | None = None
    sex: str = ""
    accession_number: str = ""
    study_date: dt.date | None = None
    laterality: str = Image.Laterality.UNKNOWN
    view: str = Image.View.OTHER
    bits_stored: int | None = None
    photometric: str = ""
    manufacturer: str = ""
    presentation_intent: str = ""


def ingest_file(
    *,
    file: IO[bytes] | File,
    filename: str = "",
    patient_id: str = "",
    laterality: str = "",
    view: str = "",
    accession_number: str = "",
    user=None,
    ip_address: str | None = None,
    via: str = "",
) -> IngestResult:
    """Ingest one DICOM or image file. Same bytes or same SOPInstanceUID again returns the existing image.

    patient_id, laterality and view describe a plain image file; a DICOM carries its
    own (the given values fill only what the DICOM lacks). `user`, `ip_address` and
    `via` go into the audit trail. Raises PortalError.
    """
    django_file = file if isinstance(file, File) else File(file, name=filename)
    size = django_file.size
    if not size:
        raise PortalError("the file is empty", field="file")
    if size > settings.PORTAL_MAX_UPLOAD_BYTES:
        raise TooLarge(f"the file is {size / 1e6:.1f} MB; the limit is {settings.PORTAL_MAX_UPLOAD_BYTES / 1e6:.0f} MB")
    laterality = _clean_choice(laterality, Image.Laterality, "laterality", {"LEFT": "L", "RIGHT": "R"})
    view = _clean_choice(view, Image.View, "view", {})

    sha256 = _sha256(django_file)
    existing = Image.objects.filter(sha256=sha256).first()
    if existing is not None:
        return IngestResult(existing, created=False)

    parsed = _parse(
        django_file,
        patient_id=patient_id.strip(),
        laterality=laterality,
        view=view,
        accession_number=accession_number.strip(),
        sha256=sha256,
    )
    existing = Image.objects.filter(sop_uid=parsed.sop_uid).first()
    if existing is not None:
        return IngestResult(existing, created=False)
    rendition = _render(parsed.pixels)
    return _store(
        django_file,
        parsed,
        rendition,
        sha256=sha256,
        size=size,
        audit={"user": user, "ip_address": ip_address, "detail": {"via": via}},
    )


def _clean_choice(value: str, choices, name: str, aliases: dict[str, str]) -> str:
    value = (value or "").strip().upper()
    value = aliases.get(value, value)
    if value and value not in choices.values:
        allowed = ", ".join(choices.values)
        raise PortalError(f"{name} must be one of {allowed}, got {value!r}", field=name)
    return value


def _sha256(django_file: File) -> str:
    digest = hashlib.sha256()
    django_file.seek(0)
    for chunk in django_file.chunks():
        digest.update(chunk)
    django_file.seek(0)
    return digest.hexdigest()


def _looks_like_dicom(fobj: IO[bytes]) -> bool:
    fobj.seek(0)
    head = fobj.read(132)
    fobj.seek(0)
    return len(head) == 132 and head[128:132] == b"DICM"


def _parse(
    django_file: File, *, patient_id: str, laterality: str, view: str, accession_number: str, sha256: str
) -> _Parsed:
    fobj = django_file.file if hasattr(django_file, "file") and django_file.file else django_file
    if _looks_like_dicom(fobj):
        return _parse_dicom(_read_dicom(fobj, force=False), patient_id, laterality, view)
    try:
        pixels, image_format = _read_image(fobj)
    except UnsupportedMedia:
        # Some archives write DICOM without the 128-byte preamble: accept it only
        # when it parses into a dataset that claims to be an image.
        ds = _read_dicom(fobj, force=True, quiet=True)
        if ds is None or "SOPClassUID" not in ds:
            raise
        return _parse_dicom(ds, patient_id, laterality, view)
    if not patient_id:
        raise PortalError("patient_id is required for image files (a DICOM carries its own)", field="patient_id")
    if len(patient_id) > 64:
        raise PortalError("patient_id is longer than 64 characters", field="patient_id")
    return _Parsed(
        file_format=image_format,
        pixels=pixels,
        sop_uid=generate_uid(entropy_srcs=[sha256]),
        study_uid="",
        uid_generated=True,
        patient_id=patient_id,
        accession_number=accession_number,
        study_date=timezone.localdate(),
        laterality=laterality or Image.Laterality.UNKNOWN,
        view=view or Image.View.OTHER,
        bits_stored=16 if pixels.dtype == np.uint16 else 8,
        photometric="MONOCHROME2",
    )


def _read_dicom(fobj: IO[bytes], *, force: bool, quiet: bool = False):
    fobj.seek(0)
    try:
        return pydicom.dcmread(fobj, force=force)
    except Exception as exc:  # InvalidDicomError, and many other types for a damaged header
        if quiet:
            return None
        raise PortalError(f"the DICOM file cannot be read: {exc}", code="invalid_dicom") from exc


def _read_image(fobj: IO[bytes]) -> tuple[np.ndarray, str]:
    fobj.seek(0)
    try:
        with PILImage.open(fobj) as probe:
            image_format = probe.format or ""
    except PILImage.DecompressionBombError as exc:
        raise PortalError(f"image is too large to decode safely: {exc}", code="too_many_pixels") from exc
    except Exception:
        raise UnsupportedMedia(
            "not a DICOM file and not a supported image (expected DICOM, PNG, JPEG, PGM or TIFF)"
        ) from None
    if image_format not in _IMAGE_FORMATS:
        raise UnsupportedMedia(
            f"{image_format or 'this'} image format is not supported (expected PNG, JPEG, PGM or TIFF)"
        )
    fobj.seek(0)
    try:
        pixels = image_to_float(fobj)
    except DecodeError as exc:
        raise PortalError(str(exc), code="invalid_image") from exc
    _check_pixel_count(*pixels.shape)
    return pixels, _IMAGE_FORMATS[image_format]


def _check_pixel_count(rows: int, columns: int) -> None:
    if rows * columns > settings.PORTAL_MAX_IMAGE_PIXELS:
        raise PortalError(
            f"{rows}x{columns} pixels is over the limit of {settings.PORTAL_MAX_IMAGE_PIXELS:,} pixels",
            code="too_many_pixels",
        )


def _text(ds, keyword: str, limit: int) -> str:
    value = ds.get(keyword, "")
    return str(value if value is not None else "").strip()[:limit]


def _parse_dicom(ds, patient_id: str, laterality: str, view: str) -> _Parsed:
    """Validate and decode a dataset; a damaged header value becomes a PortalError, not a crash."""
    try:
        return _validate_dicom(ds, patient_id, laterality, view)
    except PortalError:
        raise
    except Exception as exc:  # malformed values raise ValueError, TypeError, KeyError... from pydicom
        raise PortalError(f"the DICOM header is damaged: {exc}", code="invalid_dicom") from exc


def _validate_dicom(ds, patient_id: str, laterality: str, view: str) -> _Parsed:
    modality = _text(ds, "Modality", 16)
    if modality != "MG":
        if modality:
            raise UnsupportedMedia(f"{modality} is not a mammography modality (expected MG)")
        raise UnsupportedMedia("the DICOM has no Modality (expected MG)")
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class not in MG_SOP_CLASSES:
        name = getattr(ds.get("SOPClassUID"), "name", "") or "unknown"
        raise UnsupportedMedia(
            f"SOP class {sop_class or 'missing'} ({name}) is not Digital Mammography X-Ray Image Storage"
        )
    if not any(tag in ds for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise PortalError("the DICOM has no pixel data", code="no_pixel_data")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames != 1:
        raise PortalError(
            f"the DICOM holds {frames} frames; expected one mammogram (tomosynthesis is not supported)",
            code="multi_frame",
        )
    photometric = _text(ds, "PhotometricInterpretation", 16).upper()
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise PortalError(
            f"colour image ({photometric or 'unknown photometric interpretation'}) is not a grayscale mammogram",
            code="colour_image",
        )
    bits = int(ds.get("BitsStored", 0) or 0)
    if not 8 <= bits <= 16:
        raise PortalError(f"{bits} bits stored is not supported (expected 8 to 16)", code="unsupported_bits")
    rows, columns = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if rows <= 0 or columns <= 0:
        raise PortalError("the DICOM has no image size (Rows/Columns)", code="no_pixel_data")
    _check_pixel_count(rows, columns)
    sop_uid = _text(ds, "SOPInstanceUID", 64)
    if not sop_uid:
        raise PortalError("the DICOM has no SOPInstanceUID", code="invalid_dicom")
    source_patient = _text(ds, "PatientID", 64) or patient_id
    if not source_patient:
        raise PortalError("the DICOM has no PatientID; give patient_id", field="patient_id")
    try:
        pixels = dicom_to_float(ds)
    except DecodeError as exc:
        raise PortalError(f"the pixel data cannot be decoded: {exc}", code="invalid_pixel_data") from exc
    if pixels.shape != (rows, columns):
        raise PortalError(
            f"the pixel data is {pixels.shape}, not the {rows}x{columns} the header says", code="invalid_pixel_data"
        )
    study_uid = _text(ds, "StudyInstanceUID", 64)
    return _Parsed(
        file_format=Image.Format.DICOM,
        pixels=pixels,
        sop_uid=sop_uid,
        study_uid=study_uid or generate_uid(entropy_srcs=[sop_uid, "study"]),
        uid_generated=not study_uid,
        patient_id=source_patient,
        patient_name=str(ds.get("PatientName", "") or "").replace("^", " ").strip()[:200],
        birth_date=_dicom_date(ds.get("PatientBirthDate")),
        sex=_text(ds, "PatientSex", 1).upper() if _text(ds, "PatientSex", 1).upper() in ("F", "M", "O") else "",
        accession_number=_text(ds, "AccessionNumber", 16),
        study_date=_dicom_date(ds.get("StudyDate")),
        laterality=_dicom_laterality(ds) or laterality or Image.Laterality.UNKNOWN,
        view=_dicom_view(ds) or view or Image.View.OTHER,
        bits_stored=bits,
        photometric=photometric,
        manufacturer=_text(ds, "Manufacturer", 64),
        presentation_intent=_text(ds, "PresentationIntentType", 16),
    )


def _dicom_date(value) -> dt.date | None:
    text = str(value or "").strip()
    try:
        return dt.datetime.strptime(text[:8], "%Y%m%d").date() if len(text) >= 8 else None
    except ValueError:
        return None


def _dicom_laterality(ds) -> str:
    for keyword in ("ImageLaterality", "Laterality"):
        value = _text(ds, keyword, 4).upper()
        if value in ("L", "R"):
            return value
    return ""


def _dicom_view(ds) -> str:
    position = _text(ds, "ViewPosition", 16).upper()
    if position:
        # Only the two screening views get a row of their own; XCCL, ML, LM... are "other".
        return {"CC": Image.View.CC, "MLO": Image.View.MLO}.get(position, Image.View.OTHER)
    for item in ds.get("ViewCodeSequence", []) or []:
        code = str(item.get("CodeValue", "")).strip()
        if code in _VIEW_CODES:
            return _VIEW_CODES[code]
        meaning = str(item.get("CodeMeaning", "")).lower()
        for words, result in _VIEW_WORDS:
            if words in meaning:
                return result
    return ""


def _render(pixels: np.ndarray) -> bytes:
    """The browser rendition: 8-bit PNG, presentation LUTs applied, longest side capped."""
    img = PILImage.fromarray(np.round(pixels * 255.0).astype(np.uint8), mode="L")
    longest = max(img.size)
    limit = settings.PORTAL_RENDITION_MAX_SIDE
    if longest > limit:
        scale = limit / longest
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), PILImage.Resampling.BOX)
    buffer = io.BytesIO()
    img.save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()


def _store(
    django_file: File, parsed: _Parsed, rendition: bytes, *, sha256: str, size: int, audit: dict
) -> IngestResult:
    from .predictions import enqueue_images  # predictions imports decode_original from here

    key = uuid.uuid4().hex
    extension = "dcm" if parsed.file_format == Image.Format.DICOM else parsed.file_format
    saved: list[str] = []
    try:
        django_file.seek(0)
        saved.append(default_storage.save(f"originals/{key[:2]}/{key}.{extension}", django_file))
        saved.append(default_storage.save(f"renditions/{key[:2]}/{key}.png", ContentFile(rendition)))
        with transaction.atomic():
            image = _write_rows(parsed, original=saved[0], rendition=saved[1], sha256=sha256, size=size)
            record_event(action="ingest", study=image.study, obj=image, **audit)
            enqueue_images([image.pk])  # tasks are published after the commit
    except IntegrityError:
        # A concurrent upload of the same file or SOPInstanceUID won the race.
        _delete(saved)
        existing = Image.objects.filter(sha256=sha256).first() or Image.objects.filter(sop_uid=parsed.sop_uid).first()
        if existing is None:
            raise
        return IngestResult(existing, created=False)
    except BaseException:
        _delete(saved)
        raise
    log.info("ingested image %s into study %s", image.pk, image.study_id)
    return IngestResult(image, created=True)


def _write_rows(parsed: _Parsed, *, original: str, rendition: str, sha256: str, size: int) -> Image:
    patient, _ = Patient.objects.get_or_create(
        patient_id=parsed.patient_id,
        defaults={"name": parsed.patient_name, "birth_date": parsed.birth_date, "sex": parsed.sex},
    )
    study = _study_for(parsed, patient)
    rows, columns = parsed.pixels.shape
    return Image.objects.create(
        sop_uid=parsed.sop_uid,
        study=study,
        laterality=parsed.laterality,
        view=parsed.view,
        file_format=parsed.file_format,
        original=original,
        rendition=rendition,
        rows=rows,
        columns=columns,
        bits_stored=parsed.bits_stored,
        photometric=parsed.photometric,
        manufacturer=parsed.manufacturer,
        presentation_intent=parsed.presentation_intent,
        sha256=sha256,
        size_bytes=size,
    )


def _study_for(parsed: _Parsed, patient: Patient) -> Study:
    if parsed.study_uid:
        study, _ = Study.objects.get_or_create(
            study_uid=parsed.study_uid,
            defaults={
                "patient": patient,
                "accession_number": parsed.accession_number,
                "study_date": parsed.study_date,
                "uid_generated": parsed.uid_generated,
            },
        )
        if study.patient_id != patient.pk:
            raise PortalError("this StudyInstanceUID already belongs to another patient", code="conflict", status=409)
        return study
    # Image files: one open study per patient, accession number and day.
    study = (
        Study.objects.select_for_update()
        .filter(
            patient=patient, uid_generated=True, accession_number=parsed.accession_number, study_date=parsed.study_date
        )
        .exclude(status=Study.Status.REPORTED)
        .order_by("-created")
        .first()
    )
    if study is None:
        study = Study.objects.create(
            study_uid=generate_uid(),
            uid_generated=True,
            patient=patient,
            accession_number=parsed.accession_number,
            study_date=parsed.study_date,
        )
    return study


def _delete(names: list[str]) -> None:
    for name in names:
        try:
            default_storage.delete(name)
        except Exception:  # never mask the original error with a cleanup failure
            log.exception("could not delete stored file after a failed ingest")


def decode_original(image: Image) -> np.ndarray:
    """The stored original's presentation pixels (float32 [0, 1]), for the model. Raises PortalError."""
    try:
        with default_storage.open(image.original.name, "rb") as fh:
            if image.file_format == Image.Format.DICOM:
                return dicom_to_float(pydicom.dcmread(fh, force=True))
            return image_to_float(fh)
    except FileNotFoundError:
        raise PortalError("the stored original file is missing", code="missing_file") from None
    except DecodeError as exc:
        raise PortalError(f"the pixel data cannot be decoded: {exc}", code="invalid_pixel_data") from exc
    except Exception as exc:  # a file damaged after ingest
        raise PortalError(f"the stored original cannot be read: {exc}", code="invalid_pixel_data") from exc


def full_resolution_png(image: Image) -> str:
    """Storage name of the image's full-resolution 8-bit PNG, made from the original on first use."""
    name = f"full/{image.sha256[:2]}/{image.sha256}.png"
    if default_storage.exists(name):
        return name
    pixels = decode_original(image)
    buffer = io.BytesIO()
    PILImage.fromarray(np.round(pixels * 255.0).astype(np.uint8), mode="L").save(buffer, format="PNG", compress_level=1)
    try:
        return default_storage.save(name, ContentFile(buffer.getvalue()))
    except FileExistsError:  # a concurrent request made it first
        return name
