"""Ingest's validation: what can be told about an upload from its header, its lengths and its
markers, without decoding a pixel (the render worker decodes, later). Every refusal is a
PortalError whose message names what is wrong and never echoes a header value.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from dataclasses import dataclass, field
from typing import IO

import pydicom
from django.conf import settings
from django.core.files import File
from django.utils import timezone
from PIL import Image as PILImage
from pydicom.multival import MultiValue
from pydicom.pixels import get_decoder
from pydicom.uid import UID, generate_uid

from ml.io import DecodeError, check_presentation, image_to_uint8
from screening.errors import PortalError, UnsupportedMedia
from screening.intake.cad_sr import MAMMOGRAPHY_CAD_SR, CadMarkData, CadSrError, read_cad_marks
from screening.intake.services.pixel_checks import check_dicom_pixel_data, check_image_file_ends
from screening.intake.services.renditions import decode_slot
from screening.models import Image

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


@dataclass
class Parsed:
    """Everything validated, ready to be written."""

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


@dataclass
class ParsedCadSr:
    """A vendor's Mammography CAD SR, validated: where it is filed and its marks (or why they cannot be read)."""

    sop_uid: str
    study_uid: str
    patient_id: str
    patient_name: str = ""
    birth_date: dt.date | None = None
    sex: str = ""
    accession_number: str = ""
    study_date: dt.date | None = None
    manufacturer: str = ""
    marks: list[CadMarkData] = field(default_factory=list)
    parse_error: str = ""
    uid_generated: bool = False


_PREFIX = 1 << 20  # the most of a preamble-less file read to find its header


def _dataset_prefix(fobj: IO[bytes]) -> bytes:
    """The first megabyte of a file that starts like a DICOM dataset without preamble (its first element in
    group 0002, the file meta, or 0008, the dataset, either byte order); b"" for anything else."""
    fobj.seek(0)
    head = fobj.read(_PREFIX)
    fobj.seek(0)
    group = head[:2]
    return head if len(head) >= 8 and group in (b"\x02\x00", b"\x08\x00", b"\x00\x02", b"\x00\x08") else b""


def _looks_like_dicom(fobj: IO[bytes]) -> bool:
    fobj.seek(0)
    head = fobj.read(132)
    fobj.seek(0)
    return len(head) == 132 and head[128:132] == b"DICM"


def parse(
    django_file: File, *, size: int, patient_id: str, laterality: str, view: str, accession_number: str, sha256: str
) -> Parsed | ParsedCadSr:
    """Validate an upload from its header, lengths and markers; raises PortalError (UnsupportedMedia for
    what is no mammogram). Image files take patient_id, laterality and view from the uploader."""
    fobj = django_file.file if hasattr(django_file, "file") and django_file.file else django_file
    if _looks_like_dicom(fobj):
        return _parse_dicom(fobj, size=size, force=False, patient_id=patient_id, laterality=laterality, view=view)
    try:
        probe = _probe_image(fobj)
    except UnsupportedMedia:
        # Some archives write DICOM without the 128-byte preamble: accept it only when it starts like a
        # dataset and its first megabyte parses into one that claims to be an image. pydicom's forced read
        # takes anything, 8 bytes an element: an all-zero file cost minutes of CPU before its 415.
        prefix = _dataset_prefix(fobj)
        ds = _read_dicom(io.BytesIO(prefix), force=True, header_only=True, quiet=True) if prefix else None
        if ds is None or "SOPClassUID" not in ds:
            raise
        return _parse_dicom(fobj, size=size, force=True, patient_id=patient_id, laterality=laterality, view=view)
    if not patient_id:
        raise PortalError("patient_id is required for image files (a DICOM carries its own)", field="patient_id")
    if len(patient_id) > 64:
        raise PortalError("patient_id is longer than 64 characters", field="patient_id")
    if len(accession_number) > 16:
        raise PortalError("accession_number is longer than 16 characters", field="accession_number")
    check_image_file_ends(fobj, size=size, file_format=probe.format)
    if probe.mode in ("RGB", "RGBA"):
        _check_gray(fobj)
    return Parsed(
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
    )


# --- sizes ---------------------------------------------------------------------------------

MB = 1_000_000  # the one size unit of every message and of PORTAL_MAX_UPLOAD_MB


def megabytes(size: int) -> str:
    return f"{size / MB:,.1f} MB"


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
    frames: int = 1


def _probe_image(fobj: IO[bytes]) -> _Probe:
    """Format, size and mode from the image header, checked before any pixel is decoded."""
    fobj.seek(0)
    try:
        with PILImage.open(fobj) as img:
            probe = _Probe(img.format or "", img.width, img.height, img.mode, getattr(img, "n_frames", 1))
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
    if probe.frames > 1:
        raise PortalError(f"the file holds {probe.frames} frames (expected one image)", code="invalid_image")
    if PILImage.getmodebands(probe.mode) > 1 and probe.mode not in ("LA", "RGB", "RGBA"):
        raise PortalError(f"colour image ({probe.mode}) is not a grayscale mammogram", code="colour_image")
    # Pillow holds 1 byte a pixel for L, 2 for 16-bit gray, 4 for RGB, RGBA, LA, I and F.
    size = 1 if probe.mode in ("1", "L", "P") else 2 if probe.mode.startswith("I;16") else 4
    _check_decode_size(probe.height, probe.width, size, f"{probe.mode} image", "send it as 8- or 16-bit grayscale")
    return probe


def _check_gray(fobj: IO[bytes]) -> None:
    """Some exporters write grayscale mammograms as RGB: only its pixels tell, so such a file (and
    only such a file) is decoded at upload, within the process's decode slots, and refused if colour."""
    fobj.seek(0)
    with decode_slot():
        try:
            image_to_uint8(
                fobj, max_side=settings.PORTAL_RENDITION_MAX_SIDE, max_pixels=settings.PORTAL_MAX_IMAGE_PIXELS
            )
        except DecodeError as exc:
            raise PortalError(str(exc), code="invalid_pixel_data") from exc


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


def _parse_dicom(
    fobj: IO[bytes], *, size: int, force: bool, patient_id: str, laterality: str, view: str
) -> Parsed | ParsedCadSr:
    """Validate the header, then the pixel data by its lengths and markers, without decoding it;
    damage becomes a PortalError, not a crash. A vendor's Mammography CAD SR is read for its marks."""
    header = _read_dicom(fobj, force=force, header_only=True)
    if _text(header, "SOPClassUID", 64) == MAMMOGRAPHY_CAD_SR:
        return _parse_cad_sr(header, patient_id)
    position = fobj.tell()  # the header-only read stops at the Pixel Data element
    try:
        parsed = _validate_dicom(header, patient_id, laterality, view)
        tsyntax = _decodable_transfer_syntax(header)
        rows, columns, allocated = int(header.Rows), int(header.Columns), int(header.BitsAllocated)
    except PortalError:
        raise
    except Exception as exc:  # malformed values raise ValueError, TypeError, KeyError... from pydicom
        raise PortalError("the DICOM header is damaged and cannot be read", code="invalid_dicom") from exc
    if not tsyntax.is_little_endian or tsyntax.is_deflated:
        # Rare encodings whose element lengths cannot be read in place: the whole file is parsed once.
        ds = _read_dicom(fobj, force=force)
        if "PixelData" not in ds:
            raise PortalError("the DICOM has no pixel data", code="no_pixel_data")
        return parsed
    fobj.seek(position)
    check_dicom_pixel_data(fobj, size=size, tsyntax=tsyntax, rows=rows, columns=columns, bits_allocated=allocated)
    return parsed


def _decodable_transfer_syntax(ds) -> UID:
    """The transfer syntax, when the render worker has a decoder for it (checked now, not found later)."""
    file_meta = getattr(ds, "file_meta", None)
    value = file_meta.get("TransferSyntaxUID") if file_meta is not None else None
    if not value:
        raise PortalError(
            "the file meta header has no TransferSyntaxUID, so the pixel data cannot be decoded",
            code="invalid_pixel_data",
        )
    tsyntax = UID(str(value))
    if not tsyntax.is_transfer_syntax:
        raise PortalError(
            "the file meta header's TransferSyntaxUID is not a known transfer syntax (damaged header?)",
            code="invalid_pixel_data",
        )
    try:
        decoder = get_decoder(tsyntax)
    except NotImplementedError:
        raise PortalError(f"{tsyntax.name} pixel data is not supported", code="invalid_pixel_data") from None
    if not decoder.is_available:
        raise PortalError(f"no decoder for {tsyntax.name} pixel data is installed", code="invalid_pixel_data")
    return tsyntax


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


def _validate_dicom(ds, patient_id: str, laterality: str, view: str) -> Parsed:
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
    return Parsed(
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


def _parse_cad_sr(ds, patient_id: str) -> ParsedCadSr:
    """A CAD SR is kept whenever it can be filed (its SOPInstanceUID, its study and its woman); findings that
    cannot be read leave it without marks, with the reason, and never refuse it."""
    sop_uid = _uid(ds, "SOPInstanceUID", required=True)
    study_uid = _uid(ds, "StudyInstanceUID")
    if not study_uid:
        raise PortalError("the CAD SR has no StudyInstanceUID: it cannot be filed with its study", code="invalid_dicom")
    source_patient = _identifier(ds, "PatientID", 64) or patient_id
    if not source_patient:
        raise PortalError("the DICOM has no PatientID; give patient_id", field="patient_id")
    try:
        marks, error = read_cad_marks(ds), ""
    except CadSrError as exc:
        marks, error = [], str(exc)[:200]
    sex = _text(ds, "PatientSex", 1).upper()
    return ParsedCadSr(
        sop_uid=sop_uid,
        study_uid=study_uid,
        patient_id=source_patient,
        patient_name=_text(ds, "PatientName", 200).replace("^", " ").strip(),
        birth_date=_dicom_date(ds.get("PatientBirthDate")),
        sex=sex if sex in ("F", "M", "O") else "",
        accession_number=_identifier(ds, "AccessionNumber", 16),
        study_date=_dicom_date(ds.get("StudyDate")),
        manufacturer=_text(ds, "Manufacturer", 64),
        marks=marks,
        parse_error=error,
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
