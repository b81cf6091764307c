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
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
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
from pydicom.multival import MultiValue
from pydicom.uid import generate_uid

from ml.io import DecodeError, check_presentation, dicom_to_uint8, image_to_uint8

from .. import selectors
from ..errors import PortalError, TooLarge, UnsupportedMedia
from ..models import Image, Patient, Study
from .audit import record_event
from .media import decode_original
from .predictions import enqueue_images

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
    rows: int
    columns: int
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
    # The 8-bit picture, longest side at most PORTAL_RENDITION_MAX_SIDE: the rendition's pixels.
    preview: np.ndarray | None = None


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
        raise TooLarge(f"the file is {megabytes(size)}; the limit is {megabytes(settings.PORTAL_MAX_UPLOAD_BYTES)}")
    laterality = _clean_choice(laterality, Image.Laterality, "laterality", {"LEFT": "L", "RIGHT": "R"})
    view = _clean_choice(view, Image.View, "view", {})

    sha256 = _sha256(django_file)
    existing = Image.objects.filter(sha256=sha256).first()
    if existing is not None:
        return _existing_for(existing, user)

    with _decode_slot():
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
        return _existing_for(existing, user)
    rendition = _render(parsed.preview)
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
        return _parse_dicom(fobj, force=False, patient_id=patient_id, laterality=laterality, view=view)
    try:
        probe = _probe_image(fobj)
    except UnsupportedMedia:
        # Some archives write DICOM without the 128-byte preamble: accept it only
        # when it parses into a dataset that claims to be an image.
        ds = _read_dicom(fobj, force=True, header_only=True, quiet=True)
        if ds is None or "SOPClassUID" not in ds:
            raise
        return _parse_dicom(fobj, force=True, patient_id=patient_id, laterality=laterality, view=view)
    if not patient_id:
        raise PortalError("patient_id is required for image files (a DICOM carries its own)", field="patient_id")
    if len(patient_id) > 64:
        raise PortalError("patient_id is longer than 64 characters", field="patient_id")
    if len(accession_number) > 16:
        raise PortalError("accession_number is longer than 16 characters", field="accession_number")
    fobj.seek(0)
    preview = _decode(
        image_to_uint8,
        fobj,
        max_side=settings.PORTAL_RENDITION_MAX_SIDE,
        max_pixels=settings.PORTAL_MAX_IMAGE_PIXELS,
    )
    return _Parsed(
        file_format=_IMAGE_FORMATS[probe.format],
        rows=probe.height,
        columns=probe.width,
        sop_uid=generate_uid(entropy_srcs=[sha256]),
        study_uid="",
        uid_generated=True,
        patient_id=patient_id,
        accession_number=accession_number,
        study_date=timezone.localdate(),
        laterality=laterality or Image.Laterality.UNKNOWN,
        view=view or Image.View.OTHER,
        bits_stored=16 if probe.mode.startswith("I;16") else 32 if probe.mode in ("I", "F") else 8,
        photometric="MONOCHROME2",
        preview=preview,
    )


# --- decoding: bounded in size and in number ---------------------------------------------

MB = 1_000_000  # the one size unit of every message and of PORTAL_MAX_UPLOAD_MB
# How long an upload waits for a decode slot before it is answered 503.
_DECODE_WAIT_SECONDS = 120
_decode_slots: tuple[int, threading.BoundedSemaphore] | None = None
_decode_slots_lock = threading.Lock()


def megabytes(size: int) -> str:
    return f"{size / MB:,.1f} MB"


@contextmanager
def _decode_slot() -> Iterator[None]:
    """At most PORTAL_MAX_CONCURRENT_DECODES uploads of this process decode at once, so the
    memory one process spends on decoding stays a small multiple of one upload's."""
    global _decode_slots
    limit = settings.PORTAL_MAX_CONCURRENT_DECODES
    with _decode_slots_lock:
        if _decode_slots is None or _decode_slots[0] != limit:
            _decode_slots = (limit, threading.BoundedSemaphore(limit))
        slots = _decode_slots[1]
    if not slots.acquire(timeout=_DECODE_WAIT_SECONDS):
        raise PortalError(
            "the server is busy decoding other uploads; send the file again in a minute", code="busy", status=503
        )
    try:
        yield
    finally:
        slots.release()


def _decode(function, source, **options) -> np.ndarray:
    try:
        return function(source, **options)
    except DecodeError as exc:
        raise PortalError(str(exc), code="invalid_pixel_data") from exc


def _check_pixel_count(rows: int, columns: int) -> None:
    if rows * columns > settings.PORTAL_MAX_IMAGE_PIXELS:
        raise PortalError(
            f"{rows}x{columns} pixels is over the limit of {settings.PORTAL_MAX_IMAGE_PIXELS:,} pixels",
            code="too_many_pixels",
        )


def _check_decode_size(rows: int, columns: int, bytes_per_pixel: int, what: str, advice: str) -> None:
    """What one upload may allocate: its pixels at 16 bits each, whatever its format."""
    need, limit = rows * columns * bytes_per_pixel, settings.PORTAL_MAX_IMAGE_PIXELS * 2
    if need > limit:
        raise PortalError(
            f"a {rows}x{columns} {what} takes {megabytes(need)} to decode, over the limit of {megabytes(limit)}; "
            f"{advice}",
            code="too_many_pixels",
        )


# --- image files -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Probe:
    format: str
    width: int
    height: int
    mode: str


def _probe_image(fobj: IO[bytes]) -> _Probe:
    """Format, size and mode from the image header, checked before any pixel is decoded."""
    fobj.seek(0)
    try:
        with PILImage.open(fobj) as img:
            probe = _Probe(img.format or "", img.width, img.height, img.mode)
    except PILImage.DecompressionBombError as exc:
        raise PortalError(f"image is too large to decode safely: {exc}", code="too_many_pixels") from exc
    except Exception:
        raise UnsupportedMedia(
            "not a DICOM file and not a supported image (expected DICOM, PNG, JPEG, PGM or TIFF)"
        ) from None
    if probe.format not in _IMAGE_FORMATS:
        raise UnsupportedMedia(
            f"{probe.format or 'this'} image format is not supported (expected PNG, JPEG, PGM or TIFF)"
        )
    _check_pixel_count(probe.height, probe.width)
    # Pillow holds 1 byte a pixel for L, 2 for 16-bit gray, 4 for RGB, RGBA, LA, I and F.
    size = 1 if probe.mode in ("1", "L", "P") else 2 if probe.mode.startswith("I;16") else 4
    _check_decode_size(probe.height, probe.width, size, f"{probe.mode} image", "send it as 8- or 16-bit grayscale")
    return probe


# --- DICOM -------------------------------------------------------------------------------

# PS3.5 9.1: components of digits without leading zeros (a lone 0 is fine), dot-separated.
_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")


def _read_dicom(fobj: IO[bytes], *, force: bool, header_only: bool = False, quiet: bool = False):
    fobj.seek(0)
    try:
        return pydicom.dcmread(fobj, force=force, stop_before_pixels=header_only)
    except Exception as exc:  # InvalidDicomError, and many other types for a damaged header
        if quiet:
            return None
        # pydicom's message can quote the damaged bytes, patient data included: not echoed.
        if header_only:
            raise PortalError("the DICOM file cannot be read: its header is damaged", code="invalid_dicom") from exc
        raise PortalError(
            "the pixel data is truncated or damaged and cannot be read", code="invalid_pixel_data"
        ) from exc


def _parse_dicom(fobj: IO[bytes], *, force: bool, patient_id: str, laterality: str, view: str) -> _Parsed:
    """Validate the header, then read and decode the pixels; damage becomes a PortalError, not a crash."""
    header = _read_dicom(fobj, force=force, header_only=True)
    try:
        parsed = _validate_dicom(header, patient_id, laterality, view)
    except PortalError:
        raise
    except Exception as exc:  # malformed values raise ValueError, TypeError, KeyError... from pydicom
        raise PortalError("the DICOM header is damaged and cannot be read", code="invalid_dicom") from exc
    ds = _read_dicom(fobj, force=force)
    if "PixelData" not in ds:
        if len(ds) < len(header):
            # pydicom gives up on a file that ends inside encapsulated (compressed) pixel data.
            raise PortalError(
                "the pixel data is truncated or damaged: the file ends inside it", code="invalid_pixel_data"
            )
        raise PortalError("the DICOM has no pixel data", code="no_pixel_data")
    parsed.preview = _decode(dicom_to_uint8, ds, max_side=settings.PORTAL_RENDITION_MAX_SIDE)
    return parsed


def _text(ds, keyword: str, limit: int) -> str:
    """A descriptive value (Modality, Manufacturer...), cut to its column: cutting one merges nothing."""
    try:
        value = ds.get(keyword, "")
        return str(value if value is not None else "").strip()[:limit]
    except Exception as exc:
        raise PortalError(f"the DICOM header's {keyword} is damaged", code="invalid_dicom") from exc


def _int(ds, keyword: str) -> int:
    try:
        return int(ds.get(keyword, 0) or 0)
    except Exception as exc:
        raise PortalError(f"{keyword} is not a whole number", code="invalid_dicom") from exc


def _identifier(ds, keyword: str, limit: int) -> str:
    """A value that tells records apart (PatientID, AccessionNumber): refused when too long, never
    cut, since two values with the same first `limit` characters would become one record."""
    value = ds.get(keyword)
    if isinstance(value, MultiValue):
        raise PortalError(f"{keyword} holds {len(value)} values; expected one", code="invalid_dicom")
    text = str(value if value is not None else "").strip()
    if len(text) > limit:
        raise PortalError(
            f"{keyword} is {len(text)} characters long, over the {limit} DICOM allows; it is refused, not cut, "
            "so that it cannot be taken for another record",
            code="invalid_dicom",
        )
    return text


def _uid(ds, keyword: str, *, required: bool = False) -> str:
    """A UID in PS3.5 grammar; anything else is refused, never stored or echoed."""
    value = ds.get(keyword)
    text = "" if value is None else str(value).rstrip("\x00 ")
    if not text:
        if required:
            raise PortalError(f"the DICOM has no {keyword}", code="invalid_dicom")
        return ""
    if isinstance(value, MultiValue) or len(text) > 64 or not _UID.fullmatch(text):
        raise PortalError(
            f"{keyword} is not a valid DICOM UID (digits and dots, no leading zeros, at most 64 characters)",
            code="invalid_dicom",
        )
    return text


def _validate_dicom(ds, patient_id: str, laterality: str, view: str) -> _Parsed:
    """Every check that needs only the header, so a bad file is refused before its pixels are read."""
    file_meta = getattr(ds, "file_meta", None)
    if file_meta is not None and "TransferSyntaxUID" in file_meta:
        _uid(file_meta, "TransferSyntaxUID")
    modality = _text(ds, "Modality", 16)
    if modality != "MG":
        if modality:
            raise UnsupportedMedia(f"{modality} is not a mammography modality (expected MG)")
        raise UnsupportedMedia("the DICOM has no Modality (expected MG)")
    sop_class = _text(ds, "SOPClassUID", 64)
    if sop_class not in MG_SOP_CLASSES:
        name = getattr(ds.get("SOPClassUID"), "name", "") or "unknown"
        raise UnsupportedMedia(
            f"SOP class {sop_class or 'missing'} ({name}) is not Digital Mammography X-Ray Image Storage"
        )
    frames = _int(ds, "NumberOfFrames") or 1
    if frames != 1:
        raise PortalError(
            f"the DICOM holds {frames} frames; expected one mammogram (tomosynthesis is not supported)",
            code="multi_frame",
        )
    photometric = _text(ds, "PhotometricInterpretation", 16).upper()
    if (_int(ds, "SamplesPerPixel") or 1) != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise PortalError(
            f"colour image ({photometric or 'unknown photometric interpretation'}) is not a grayscale mammogram",
            code="colour_image",
        )
    bits = _int(ds, "BitsStored")
    if not 8 <= bits <= 16:
        raise PortalError(f"{bits} bits stored is not supported (expected 8 to 16)", code="unsupported_bits")
    rows, columns = _int(ds, "Rows"), _int(ds, "Columns")
    if rows <= 0 or columns <= 0:
        raise PortalError("the DICOM has no image size (Rows/Columns)", code="no_pixel_data")
    _check_pixel_count(rows, columns)
    allocated = _int(ds, "BitsAllocated")
    _check_decode_size(
        rows, columns, max(1, -(-allocated // 8)), f"DICOM with {allocated} bits allocated", "expected 8 or 16"
    )
    sop_uid = _uid(ds, "SOPInstanceUID", required=True)
    study_uid = _uid(ds, "StudyInstanceUID")
    _uid(ds, "SeriesInstanceUID")
    source_patient = _identifier(ds, "PatientID", 64) or patient_id
    if not source_patient:
        raise PortalError("the DICOM has no PatientID; give patient_id", field="patient_id")
    if len(source_patient) > 64:
        raise PortalError("patient_id is longer than 64 characters", field="patient_id")
    accession_number = _identifier(ds, "AccessionNumber", 16)
    try:
        check_presentation(ds)
    except DecodeError as exc:
        raise PortalError(str(exc), code="invalid_dicom") from exc
    sex = _text(ds, "PatientSex", 1).upper()
    return _Parsed(
        file_format=Image.Format.DICOM,
        rows=rows,
        columns=columns,
        sop_uid=sop_uid,
        study_uid=study_uid or generate_uid(entropy_srcs=[sop_uid, "study"]),
        uid_generated=not study_uid,
        patient_id=source_patient,
        patient_name=_text(ds, "PatientName", 200).replace("^", " ").strip(),
        birth_date=_dicom_date(ds.get("PatientBirthDate")),
        sex=sex if sex in ("F", "M", "O") else "",
        accession_number=accession_number,
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


def _render(preview: np.ndarray) -> bytes:
    """The browser rendition: the 8-bit preview (presentation LUTs applied, longest side capped) as PNG."""
    buffer = io.BytesIO()
    PILImage.fromarray(preview).save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()


# One answer for every upload that points into a record its sender may not add to: a study
# (StudyInstanceUID) of another patient or of another account, or an image held by another
# account. The same status, code and message whichever it is and whatever PatientID the file
# carries, so the answer tells nothing about whom the record belongs to.
NOT_YOURS = "the portal already holds this image or its study (StudyInstanceUID) under a record you cannot add to"


def _refused() -> PortalError:
    return PortalError(NOT_YOURS, code="conflict", status=409)


def _may_add_to(study_id: int, user) -> bool:
    # No user: the portal itself (import_images, seed_labels), which files into any study.
    return user is None or selectors.studies_visible_to(user).filter(pk=study_id).exists()


def _existing_for(image: Image, user) -> IngestResult:
    """The same file or SOPInstanceUID again: the image already held, if its sender may see it."""
    if not _may_add_to(image.study_id, user):
        raise _refused()
    return IngestResult(image, created=False)


def _store(
    django_file: File, parsed: _Parsed, rendition: bytes, *, sha256: str, size: int, audit: dict
) -> IngestResult:
    key = uuid.uuid4().hex
    extension = "dcm" if parsed.file_format == Image.Format.DICOM else parsed.file_format
    saved: list[str] = []
    try:
        django_file.seek(0)
        saved.append(default_storage.save(f"originals/{key[:2]}/{key}.{extension}", django_file))
        saved.append(default_storage.save(f"renditions/{key[:2]}/{key}.png", ContentFile(rendition)))
        with transaction.atomic():
            image = _write_rows(
                parsed, original=saved[0], rendition=saved[1], sha256=sha256, size=size, user=audit["user"]
            )
            record_event(action="ingest", study=image.study, obj=image, **audit)
            _reopen_if_reported(image, audit)
            enqueue_images([image.pk])  # tasks are published after the commit
    except IntegrityError:
        # A concurrent upload of the same file or SOPInstanceUID won the race.
        _delete(saved)
        existing = Image.objects.filter(sha256=sha256).first() or Image.objects.filter(sop_uid=parsed.sop_uid).first()
        if existing is None:
            raise
        return _existing_for(existing, audit["user"])
    except BaseException:
        _delete(saved)
        raise
    log.info("ingested image %s into study %s", image.pk, image.study_id)
    return IngestResult(image, created=True)


def _write_rows(parsed: _Parsed, *, original: str, rendition: str, sha256: str, size: int, user) -> Image:
    patient, _ = Patient.objects.get_or_create(
        patient_id=parsed.patient_id,
        defaults={"name": parsed.patient_name, "birth_date": parsed.birth_date, "sex": parsed.sex},
    )
    study = _study_for(parsed, patient, user)
    rows, columns = parsed.rows, parsed.columns
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
        uploaded_by=user if user is not None and user.is_authenticated else None,
    )


def _study_for(parsed: _Parsed, patient: Patient, user) -> Study:
    """The study the image joins: only one its sender may see, and only the same patient's."""
    if parsed.study_uid:
        study, created = Study.objects.get_or_create(
            study_uid=parsed.study_uid,
            defaults={
                "patient": patient,
                "accession_number": parsed.accession_number,
                "study_date": parsed.study_date,
                "uid_generated": parsed.uid_generated,
            },
        )
        if not created and (study.patient_id != patient.pk or not _may_add_to(study.pk, user)):
            raise _refused()
        return study
    # Image files: one open study per patient, accession number and day, among those the sender may see.
    candidates = Study.objects.all() if user is None else selectors.studies_visible_to(user)
    study = (
        candidates.select_for_update()
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


def _reopen_if_reported(image: Image, audit: dict) -> None:
    """A reported study that receives an image needs reading again: back to new (predicted once
    scored), so the worklist shows it unread. Conditional, so a concurrent report is not lost."""
    reopened = Study.objects.filter(pk=image.study_id, status=Study.Status.REPORTED).update(
        status=Study.Status.NEW, updated=timezone.now()
    )
    if reopened:
        image.study.status = Study.Status.NEW
        record_event(
            action="study_reopen",
            study=image.study,
            obj=image.study,
            user=audit["user"],
            ip_address=audit["ip_address"],
            detail={**audit["detail"], "why": "a new image arrived after the study was reported", "image": image.pk},
        )


def _delete(names: list[str]) -> None:
    for name in names:
        try:
            default_storage.delete(name)
        except Exception:  # never mask the original error with a cleanup failure
            log.exception("could not delete stored file after a failed ingest")


def full_resolution_name(sha256: str) -> str:
    """Where the full-resolution PNG of the image with this digest is stored, once made."""
    return f"full/{sha256[:2]}/{sha256}.png"


def full_resolution_png(image: Image) -> str:
    """Storage name of the image's full-resolution 8-bit PNG, made from the original on first use."""
    name = full_resolution_name(image.sha256)
    if default_storage.exists(name):
        return name
    pixels = decode_original(image, as_uint8=True)
    buffer = io.BytesIO()
    PILImage.fromarray(pixels, mode="L").save(buffer, format="PNG", compress_level=1)
    try:
        return default_storage.save(name, ContentFile(buffer.getvalue()))
    except FileExistsError:  # a concurrent request made it first
        return name
