"""Decode mammograms (DICOM or image files) into presentation-ready arrays.

One place turns stored pixels into what a radiologist would see: the Modality LUT,
then the VOI LUT or window, then MONOCHROME1 inverted, scaled to [0, 1] with dense
tissue bright. The portal's display renditions and the model's preprocessing both
start here, so the two cannot disagree. NumPy, pydicom and Pillow only: the web
process imports this module and must not import torch.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels import apply_modality_lut, apply_voi_lut


class DecodeError(ValueError):
    """The file's pixels cannot be turned into a grayscale mammogram."""


# Largest image we accept from a plain image file (pixels); beyond it Pillow's
# decompression-bomb guard makes decoding fail with a clear error.
MAX_IMAGE_PIXELS = 60_000_000


def _normalise(values: np.ndarray, low: float, high: float) -> np.ndarray:
    if high <= low:
        return np.zeros(values.shape, dtype=np.float32)
    out = (values.astype(np.float32) - np.float32(low)) / np.float32(high - low)
    return np.clip(out, 0.0, 1.0, out=out)


def _first(value: object) -> float:
    """WindowCenter/Width may be multi-valued: the first pair is the default view."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0]
    return float(value)


def _apply_window(values: np.ndarray, ds: Dataset) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2 window (LINEAR, LINEAR_EXACT or SIGMOID) into [0, 1]."""
    center = _first(ds.WindowCenter)
    width = max(_first(ds.WindowWidth), 1.0)
    function = str(ds.get("VOILUTFunction", "LINEAR")).upper()
    x = values.astype(np.float32)
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    if function == "LINEAR_EXACT":
        return np.clip((x - center) / width + 0.5, 0.0, 1.0)
    return np.clip((x - (center - 0.5)) / (width - 1.0 if width > 1 else 1.0) + 0.5, 0.0, 1.0)


def dicom_to_float(ds: Dataset) -> np.ndarray:
    """Presentation values of a single-frame grayscale DICOM image, float32 in [0, 1].

    Raises DecodeError for anything that is not one grayscale frame we can decode.
    """
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise DecodeError(
            f"photometric interpretation {photometric or 'missing'} is not grayscale "
            "(expected MONOCHROME1 or MONOCHROME2)"
        )
    try:
        stored = ds.pixel_array
    except Exception as exc:  # pydicom raises many types for damaged pixel data
        raise DecodeError(f"pixel data cannot be decoded: {exc}") from exc
    if stored.ndim != 2:
        raise DecodeError(f"expected one 2-D frame, got pixel array of shape {stored.shape}")

    values = apply_modality_lut(stored, ds)
    if "VOILUTSequence" in ds:
        item = ds.VOILUTSequence[0]
        out_bits = int(item.LUTDescriptor[2]) or 16
        shown = _normalise(apply_voi_lut(values, ds, index=0), 0.0, float(2**out_bits - 1))
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        shown = _apply_window(values, ds).astype(np.float32)
    else:
        shown = _normalise(values, float(values.min()), float(values.max()))
    if photometric == "MONOCHROME1":
        shown = 1.0 - shown
    return np.ascontiguousarray(shown, dtype=np.float32)


def image_to_float(source: str | Path | BinaryIO) -> np.ndarray:
    """A PNG, JPEG, PGM or TIFF (8 or 16 bit grayscale) as float32 in [0, 1].

    Colour files are accepted only when every pixel is gray (R == G == B), as
    some exporters write grayscale mammograms as RGB.
    """
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                if getattr(img, "n_frames", 1) > 1:
                    raise DecodeError(f"the file holds {img.n_frames} frames (expected one image)")
                img.load()
                mode = img.mode
                arr = np.asarray(img)
    except DecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DecodeError(f"image is too large to decode safely: {exc}") from exc
    except Exception as exc:
        raise DecodeError(f"not a readable image file: {exc}") from exc

    if arr.ndim == 3:
        if mode not in ("RGB", "RGBA", "LA") or (
            mode != "LA" and not (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2]))
        ):
            raise DecodeError(f"colour image ({mode}) is not a grayscale mammogram")
        arr = arr[..., 0]
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if np.issubdtype(arr.dtype, np.integer):
        # 16-bit files carry 10-16 significant bits with no window: stretch like DICOM.
        return _normalise(arr, float(arr.min()), float(arr.max()))
    if arr.dtype == bool:
        return arr.astype(np.float32)
    if np.issubdtype(arr.dtype, np.floating):
        return _normalise(arr, float(np.nanmin(arr)), float(np.nanmax(arr)))
    raise DecodeError(f"unsupported pixel type {arr.dtype} ({mode})")
