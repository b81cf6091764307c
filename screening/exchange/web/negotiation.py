"""WADO-RS content negotiation (PS3.18 8.7): which media type and transfer syntax an `Accept` header
asks for, and the encoding of an instance in the chosen syntax.

`application/dicom` with no `transfer-syntax` parameter (and no Accept at all) means explicit VR little
endian, as PS3.18 says; `transfer-syntax=*` means the original as stored. The portal transcodes to
explicit or implicit VR little endian always, and to the lossless syntaxes whose encoders are installed
(RLE, JPEG 2000, JPEG-LS); anything else is 406 Not Acceptable, never a mislabelled original.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import pydicom
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from screening.errors import PortalError

AS_STORED = "*"
UNCOMPRESSED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
# Syntaxes the portal can encode pixel data in (pydicom: RLE natively, JPEG 2000 with pylibjpeg-openjpeg,
# JPEG-LS with pyjpegls); lossy ones never: a transcoded mammogram must keep every stored value.
ENCODABLE = (*UNCOMPRESSED, RLELossless, JPEG2000Lossless, JPEGLSLossless)


class NotAcceptable(PortalError):
    def __init__(self, message: str):
        super().__init__(message, code="not_acceptable", status=406)


def _split_outside_quotes(text: str) -> list[str]:
    """`text` split at the commas that are not inside a quoted parameter value (linear time)."""
    items, current, quoted = [], [], False
    for c in text:
        if c == '"':
            quoted = not quoted
        if c == "," and not quoted:
            items.append("".join(current))
            current = []
        else:
            current.append(c)
    items.append("".join(current))
    return items


@dataclass(frozen=True)
class MediaRange:
    media: str  # "application/dicom", "image/jpeg", "*/*", ...
    params: dict[str, str]
    q: float


def media_ranges(accept: str) -> list[MediaRange]:
    """The Accept header's media ranges, most wanted first (by q, then by order); none: */*."""
    ranges = []
    for position, item in enumerate(_split_outside_quotes(accept or "")):
        media, *rest = [part.strip() for part in item.split(";")]
        if not media:
            continue
        params = {}
        for part in rest:
            key, _, value = part.partition("=")
            params[key.strip().lower()] = value.strip().strip('"')
        try:
            q = float(params.pop("q", "1"))
        except ValueError:
            q = 0.0
        if q > 0:
            ranges.append((-q, position, MediaRange(media.lower(), params, q)))
    return [r for *_, r in sorted(ranges, key=lambda item: item[:2])] or [MediaRange("*/*", {}, 1.0)]


@dataclass(frozen=True)
class DicomChoice:
    multipart: bool
    transfer_syntax: str  # a UID, or AS_STORED


def dicom_choice(accept: str, *, single: bool) -> DicomChoice:
    """What an instance, series or study retrieval answers: multipart/related of application/dicom parts
    (a single instance also plain application/dicom), in the first transfer syntax asked for that the
    portal can give; 406 when none is."""
    for wanted in media_ranges(accept):
        if wanted.media in ("multipart/related", "multipart/*"):
            part_type = wanted.params.get("type", "application/dicom").lower()
            multipart = True
        elif wanted.media == "application/dicom":
            part_type, multipart = "application/dicom", not single
        elif wanted.media in ("*/*", "application/*"):
            part_type, multipart = "application/dicom", True
        else:
            continue
        if part_type != "application/dicom":
            continue
        syntax = wanted.params.get("transfer-syntax", ExplicitVRLittleEndian)
        if syntax == AS_STORED or syntax in ENCODABLE:
            return DicomChoice(multipart, syntax)
    raise NotAcceptable(
        "the portal answers DICOM instances as application/dicom (or multipart/related of it) in the original "
        "transfer syntax (transfer-syntax=*), explicit or implicit VR little endian, RLE, JPEG 2000 lossless "
        "or JPEG-LS lossless"
    )


def image_choice(accept: str) -> str:
    """A rendered or thumbnail resource's media type: image/jpeg (the default) or image/png; else 406."""
    for wanted in media_ranges(accept):
        if wanted.media in ("image/jpeg", "image/png"):
            return wanted.media
        if wanted.media in ("image/*", "*/*"):
            return "image/jpeg"
    raise NotAcceptable("a rendered image is image/jpeg or image/png")


def stored_syntax(ds: pydicom.Dataset) -> str:
    return str(ds.file_meta.get("TransferSyntaxUID", ExplicitVRLittleEndian))


def served_syntax(stored: str, wanted: str, *, has_pixels: bool) -> str:
    """The syntax an instance goes out in: as asked; as stored for `*`; explicit VR little endian for an
    instance without pixel data (an SR) when a compressed syntax is asked (those encode pixel data only)."""
    if wanted == AS_STORED:
        return stored
    if wanted not in UNCOMPRESSED and not has_pixels:
        return ExplicitVRLittleEndian
    return wanted


def encode(ds: pydicom.Dataset, syntax: str) -> bytes:
    """The dataset as a DICOM file in `syntax` (decoded and re-encoded when it differs from the stored one;
    the SOP Instance UID kept: a lossless transcoding is the same instance)."""
    if syntax != stored_syntax(ds):
        if "PixelData" in ds and pydicom.uid.UID(stored_syntax(ds)).is_compressed:
            ds.decompress(generate_instance_uid=False)
        if syntax in UNCOMPRESSED or "PixelData" not in ds:
            ds.file_meta.TransferSyntaxUID = syntax
        else:
            ds.compress(syntax, generate_instance_uid=False)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
