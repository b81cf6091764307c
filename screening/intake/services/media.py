"""Stored media read back: the original's pixels for the model and for full-resolution views.

Its own module so that ingest (which queues predictions) and predictions (which
decode originals) both import it without importing each other in a circle.
"""

from __future__ import annotations

import numpy as np
import pydicom
from django.core.files.storage import default_storage

from ml.io import DecodeError, dicom_to_float, dicom_to_uint8, image_to_float, image_to_uint8
from screening.errors import PortalError
from screening.models import Image

FILM_CONVERSION_TYPES = {"DF", "DV"}  # DICOM ConversionType of digitised film


def decode_for_model(image: Image) -> tuple[np.ndarray, str]:
    """(presentation pixels for the model, source kind): 'film' when the DICOM header says digitised film
    (ConversionType DF or DV), 'digital' for other DICOM, '' for image files (the model's default kind)."""
    pixels = decode_original(image)
    if image.file_format != Image.Format.DICOM:
        return pixels, ""
    try:
        with default_storage.open(image.original.name, "rb") as fh:
            ds = pydicom.dcmread(fh, stop_before_pixels=True, force=True, specific_tags=["ConversionType"])
        conversion = str(ds.get("ConversionType", "") or "").strip().upper()
    except Exception:  # the pixels decoded: a header we cannot read again says nothing about the source
        conversion = ""
    return pixels, "film" if conversion in FILM_CONVERSION_TYPES else "digital"


def decode_original(image: Image, *, as_uint8: bool = False) -> np.ndarray:
    """The stored original's presentation pixels: float32 [0, 1] for the model, or, with `as_uint8`,
    the full-size 8-bit picture (decoded strip by strip, never as a float copy). Raises PortalError."""
    try:
        with default_storage.open(image.original.name, "rb") as fh:
            if image.file_format == Image.Format.DICOM:
                ds = pydicom.dcmread(fh, force=True)
                return dicom_to_uint8(ds) if as_uint8 else dicom_to_float(ds)
            return image_to_uint8(fh) if as_uint8 else image_to_float(fh)
    except FileNotFoundError:
        raise PortalError("the stored original file is missing", code="missing_file") from None
    except DecodeError as exc:  # its message is a whole sentence: no prefix of ours
        raise PortalError(str(exc), code="invalid_pixel_data") from exc
    except Exception as exc:  # a file damaged after ingest; pydicom's text can quote patient data
        raise PortalError("the stored original cannot be read: the file is damaged", code="invalid_pixel_data") from exc


_PLAIN = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}  # implicit and explicit VR little endian


def stored_range(image: Image) -> tuple[int, int] | None:
    """(smallest, largest) stored value of an uncompressed single-frame grey DICOM image of 8 or 16 bits, as the
    viewer's DICOM loader computes them (the stored values, sign-extended from Bits Stored when signed, no
    masking otherwise); None for anything else or a file that cannot be read. The viewer's first paint
    (static/viewer/src/fastpaint.js) windows with it when the header has no window, instead of a pass over
    13 million values in the browser."""
    if image.file_format != Image.Format.DICOM:
        return None
    try:
        with default_storage.open(image.original.name, "rb") as fh:
            ds = pydicom.dcmread(fh, force=True)
        syntax = str(getattr(ds.file_meta, "TransferSyntaxUID", "") or "")
        bits, samples = int(ds.BitsAllocated), int(ds.get("SamplesPerPixel", 1) or 1)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        if syntax not in _PLAIN or samples != 1 or frames != 1 or bits not in (8, 16):
            return None
        signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
        count = int(ds.Rows) * int(ds.Columns)
        dtype = {(8, False): "u1", (8, True): "i1", (16, False): "<u2", (16, True): "<i2"}[(bits, signed)]
        values = np.frombuffer(ds.PixelData, dtype=dtype, count=count)
        stored = int(ds.get("BitsStored", bits) or bits)
        if signed and stored < bits:  # sign-extend from Bits Stored, as the loader does
            shift = 32 - stored
            values = (values.astype(np.int32) << shift) >> shift
        return int(values.min()), int(values.max())
    except Exception:  # a damaged file: the viewer finds the range itself, or fails with the reason
        return None
