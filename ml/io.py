"""Decode mammograms (DICOM or image files) into presentation-ready arrays.

One place turns stored pixels into what a radiologist would see: the Modality LUT,
then the VOI LUT or window, then MONOCHROME1 inverted, scaled to [0, 1] with dense
tissue bright. The portal's display renditions and the model's preprocessing both
start here, so the two cannot disagree. NumPy, pydicom and Pillow only: the web
process imports this module and must not import torch.

Two outputs share that arithmetic: `dicom_to_float` / `image_to_float` (float32
[0, 1], full size, for the model) and `dicom_to_uint8` / `image_to_uint8` (the
8-bit picture, shrunk while it is made, for renditions). Both work through the
image a strip of rows at a time on the stored integers, so a 60-megapixel upload
never has a float copy of the whole image: what one decode holds is the stored
pixels plus a few megabytes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut, apply_voi_lut, get_decoder, pixel_array
from pydicom.uid import UID


class DecodeError(ValueError):
    """The file's pixels cannot be turned into a grayscale mammogram. The message is a whole
    sentence for the person who sent the file; callers show it as it is."""


# Largest image we accept from a plain image file (pixels); beyond it decoding fails
# with a clear error before any pixel is decoded.
MAX_IMAGE_PIXELS = 60_000_000

# Pixels per strip. The presentation arithmetic (float64 after a rescale) runs on one
# strip at a time, so its temporaries stay at a few megabytes whatever the image size.
STRIP_PIXELS = 1 << 18

# Largest magnitude accepted for a rescale or window value. Stored values have at most
# 16 bits, so anything near this is already absurd; beyond it float32 arithmetic
# overflows into inf and NaN.
MAX_PRESENTATION_VALUE = 1e9


def _normalise(values: np.ndarray, low: float, high: float) -> np.ndarray:
    if high <= low:
        return np.zeros(values.shape, dtype=np.float32)
    out = (values.astype(np.float32) - np.float32(low)) / np.float32(high - low)
    return np.clip(out, 0.0, 1.0, out=out)


def _first(value: object) -> float:
    """WindowCenter/Width may be multi-valued: the first pair is the default view."""
    if isinstance(value, (list, tuple, MultiValue)):
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


def _strips(rows: int, columns: int, multiple: int = 1) -> list[slice]:
    """Row ranges of about STRIP_PIXELS pixels; every one but the last a multiple of `multiple` rows."""
    step = max(1, STRIP_PIXELS // max(columns, 1))
    step = max(multiple, step - step % multiple)
    return [slice(start, min(start + step, rows)) for start in range(0, rows, step)]


# --- DICOM -----------------------------------------------------------------------------


def _numbers(ds: Dataset, keyword: str) -> list[float]:
    value = ds.get(keyword)
    values = list(value) if isinstance(value, (list, tuple, MultiValue)) else [value]
    try:
        return [float(v) for v in values if v is not None and str(v).strip() != ""]
    except (TypeError, ValueError):
        raise DecodeError(f"{keyword} is not a number") from None


def _has_value(ds: Dataset, keyword: str) -> bool:
    return keyword in ds and ds[keyword].value not in (None, "", b"")


def check_presentation(ds: Dataset) -> None:
    """Refuse presentation attributes whose arithmetic cannot give a finite picture.

    NaN, infinite or absurdly large rescale and window values, a window width of zero
    or less, and LUT descriptors that do not match their data raise DecodeError naming
    the attribute. Runs on the header alone, before any pixel is decoded.
    """
    for keyword in ("RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth"):
        for value in _numbers(ds, keyword) if keyword in ds else []:
            if not math.isfinite(value) or abs(value) > MAX_PRESENTATION_VALUE:
                raise DecodeError(
                    f"{keyword} is {value:g}; expected a finite number no larger than {MAX_PRESENTATION_VALUE:g}"
                )
    if "WindowWidth" in ds:
        for value in _numbers(ds, "WindowWidth"):
            if value <= 0:
                raise DecodeError(f"WindowWidth is {value:g}; expected a number above 0")
    if "RescaleSlope" in ds and 0.0 in _numbers(ds, "RescaleSlope"):
        raise DecodeError("RescaleSlope is 0, which would make every pixel the same value")
    _check_lut(ds, "ModalityLUTSequence", allowed_bits=(8, 16))
    _check_lut(ds, "VOILUTSequence", allowed_bits=(8, *range(10, 17)))


def _check_lut(ds: Dataset, keyword: str, allowed_bits: tuple[int, ...]) -> None:
    if not ds.get(keyword):
        return
    item = ds[keyword].value[0]
    descriptor = item.get("LUTDescriptor")
    if descriptor is None or not isinstance(descriptor, (list, tuple, MultiValue)) or len(descriptor) != 3:
        raise DecodeError(f"the LUTDescriptor of {keyword} must hold 3 values")
    entries, bits = int(descriptor[0]) or 65536, int(descriptor[2])
    if bits not in allowed_bits:
        raise DecodeError(f"the LUTDescriptor of {keyword} gives {bits} bits per entry, which is not supported")
    data = item.get("LUTData")
    held = 0 if data is None else len(data) // 2 if isinstance(data, bytes) else len(data)
    if held < entries:
        raise DecodeError(f"the LUTData of {keyword} holds {held} entries; its LUTDescriptor says {entries}")


def _transfer_syntax(ds: Dataset) -> UID:
    tsyntax = getattr(ds, "file_meta", Dataset()).get("TransferSyntaxUID")
    if not tsyntax:
        raise DecodeError("the file meta header has no TransferSyntaxUID, so the pixel data cannot be decoded")
    tsyntax = UID(str(tsyntax))
    if not tsyntax.is_transfer_syntax:
        # The value is not echoed: a damaged header can hold anything, patient data included.
        raise DecodeError("the file meta header's TransferSyntaxUID is not a known transfer syntax (damaged header?)")
    return tsyntax


def _stored_pixels(ds: Dataset) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """The single frame's stored values in their integer dtype, and the per-strip fix-up that
    completes pydicom's decoding (clearing unused high bits), so the whole image is never copied.

    Uncompressed data is a read-only view of the dataset's own bytes.
    """
    tsyntax = _transfer_syntax(ds)
    try:
        decoder = get_decoder(tsyntax)
    except NotImplementedError:
        raise DecodeError(f"{tsyntax.name} pixel data is not supported") from None
    if not decoder.is_available:
        raise DecodeError(f"no decoder for {tsyntax.name} pixel data is installed")
    if "PixelData" not in ds:
        raise DecodeError("the file has no pixel data")
    if not tsyntax.is_encapsulated:
        try:
            frames = int(ds.get("NumberOfFrames") or 1)
            expected = frames * int(ds.Rows) * int(ds.Columns) * math.ceil(int(ds.BitsAllocated) / 8)
        except (AttributeError, TypeError, ValueError):
            raise DecodeError("Rows, Columns or BitsAllocated is missing or not a number") from None
        held = len(ds.PixelData)
        if held < expected:
            raise DecodeError(
                f"the pixel data is truncated: the file holds {held:,} of the {expected:,} bytes its header describes"
            )
    native_shift = 0
    try:
        if tsyntax.is_encapsulated:
            stored = pixel_array(ds)
        else:
            # pydicom clears unused high bits with a full copy; the strips do it instead.
            stored = pixel_array(ds, view_only=True, correct_unused_bits=False)
            native_shift = max(0, int(ds.BitsAllocated) - int(ds.BitsStored))
    except Exception:  # pydicom raises many types for damaged pixel data
        kind = "compressed " if tsyntax.is_encapsulated else ""
        raise DecodeError(
            f"the {kind}pixel data ({tsyntax.name}) is damaged or truncated and cannot be decoded"
        ) from None
    if stored.ndim != 2:
        raise DecodeError(f"expected one 2-D frame, got pixel array of shape {stored.shape}")

    def complete(strip: np.ndarray) -> np.ndarray:
        if not native_shift:
            return strip
        strip = strip.copy()
        np.left_shift(strip, native_shift, out=strip)
        np.right_shift(strip, native_shift, out=strip)
        return strip

    return stored, complete


def _dicom_strips(ds: Dataset, multiple: int = 1) -> tuple[tuple[int, int], Iterator[tuple[slice, np.ndarray]]]:
    """The image's shape and its presentation values (float32 [0, 1]) strip by strip.

    Every operation is element-wise once the window, LUT or stretch range is known, so
    strips give exactly the values the whole array would.
    """
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise DecodeError(
            f"photometric interpretation {photometric or 'missing'} is not grayscale "
            "(expected MONOCHROME1 or MONOCHROME2)"
        )
    check_presentation(ds)
    stored, complete = _stored_pixels(ds)
    rows = _strips(*stored.shape, multiple=multiple)

    def modality(part: slice) -> np.ndarray:
        return apply_modality_lut(complete(stored[part]), ds)

    if ds.get("VOILUTSequence"):
        out_bits = int(ds.VOILUTSequence[0].LUTDescriptor[2]) or 16

        def present(values: np.ndarray) -> np.ndarray:
            return _normalise(apply_voi_lut(values, ds, index=0), 0.0, float(2**out_bits - 1))
    elif _has_value(ds, "WindowCenter") and _has_value(ds, "WindowWidth"):

        def present(values: np.ndarray) -> np.ndarray:
            return _apply_window(values, ds).astype(np.float32)
    else:
        low = high = None
        for part in rows:
            values = modality(part)
            low = float(values.min()) if low is None else min(low, float(values.min()))
            high = float(values.max()) if high is None else max(high, float(values.max()))

        def present(values: np.ndarray) -> np.ndarray:
            return _normalise(values, low, high)

    def strips() -> Iterator[tuple[slice, np.ndarray]]:
        for part in rows:
            shown = present(modality(part))
            if photometric == "MONOCHROME1":
                shown = 1.0 - shown
            yield part, np.ascontiguousarray(shown, dtype=np.float32)

    return stored.shape, strips()


def dicom_to_float(ds: Dataset) -> np.ndarray:
    """Presentation values of a single-frame grayscale DICOM image, float32 in [0, 1].

    Raises DecodeError for anything that is not one grayscale frame we can decode.
    """
    shape, strips = _dicom_strips(ds)
    out = np.empty(shape, dtype=np.float32)
    for part, shown in strips:
        out[part] = shown
    return out


def dicom_to_uint8(ds: Dataset, *, max_side: int | None = None) -> np.ndarray:
    """The 8-bit picture of `dicom_to_float` (round(value * 255)), shrunk while it is made so
    that its longest side is at most `max_side` (None: full size). Raises DecodeError."""
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
    except (AttributeError, TypeError, ValueError):
        raise DecodeError("Rows or Columns is missing or not a number") from None
    shrink = _Shrink(rows, columns, max_side)
    shape, strips = _dicom_strips(ds, multiple=shrink.factor)
    if shape != (rows, columns):
        raise DecodeError(f"the pixel data is {shape[0]}x{shape[1]}, not the {rows}x{columns} the header says")
    for part, shown in strips:
        shrink.add(part, _to_uint8(shown))
    return shrink.result()


def _to_uint8(shown: np.ndarray) -> np.ndarray:
    return np.round(shown * 255.0).astype(np.uint8)


class _Shrink:
    """Collects 8-bit strips into a picture whose longest side is at most `max_side`.

    Each strip is reduced at once by whole k x k block means (k = longest side // max_side),
    so the full-size picture is held only when k is 1 (then it is at most (2 * max_side)^2
    pixels); Pillow's box filter then takes the reduced picture to the exact size a single
    box resize of the full picture would give.
    """

    def __init__(self, rows: int, columns: int, max_side: int | None):
        longest = max(rows, columns)
        if max_side and longest > max_side:
            scale = max_side / longest
            self.size = (max(1, round(columns * scale)), max(1, round(rows * scale)))
            self.factor = max(1, longest // max_side)
        else:
            self.size = (columns, rows)
            self.factor = 1
        k = self.factor
        self.out = np.zeros((-(-rows // k), -(-columns // k)), dtype=np.uint8)
        # The last block of a row or column may be partial: it covers only part of its pixel.
        self.box = (0.0, 0.0, columns / k, rows / k)

    def add(self, part: slice, strip: np.ndarray) -> None:
        k = self.factor
        if k > 1:
            height, width = strip.shape
            row_starts, col_starts = np.arange(0, height, k), np.arange(0, width, k)
            sums = np.add.reduceat(strip, row_starts, axis=0, dtype=np.uint32)
            sums = np.add.reduceat(sums, col_starts, axis=1)
            counts = np.minimum(k, height - row_starts)[:, None] * np.minimum(k, width - col_starts)[None, :]
            strip = ((sums + counts // 2) // counts).astype(np.uint8)
        self.out[part.start // k : part.start // k + strip.shape[0]] = strip

    def result(self) -> np.ndarray:
        if self.out.shape[::-1] == self.size:
            return self.out
        return np.asarray(Image.fromarray(self.out).resize(self.size, Image.Resampling.BOX, box=self.box))


# --- image files -------------------------------------------------------------------------


def open_image(source: str | Path | BinaryIO, *, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Open an image file lazily: format, size and mode are read, no pixel is decoded.

    Raises DecodeError when it is no image, holds several frames, or is over `max_pixels`.
    """
    Image.MAX_IMAGE_PIXELS = max(MAX_IMAGE_PIXELS, max_pixels)
    try:
        img = Image.open(source)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DecodeError(f"image is too large to decode safely: {exc}") from exc
    except Exception:
        # Pillow's message names the file, and a file name can hold a patient's name.
        raise DecodeError("not a readable image file") from None
    if img.width * img.height > max_pixels:
        img.close()
        raise DecodeError(
            f"image is too large to decode safely: {img.width}x{img.height} pixels is over {max_pixels:,}"
        )
    if getattr(img, "n_frames", 1) > 1:
        frames = img.n_frames
        img.close()
        raise DecodeError(f"the file holds {frames} frames (expected one image)")
    return img


def _gray(img: Image.Image, mode: str, part: slice) -> np.ndarray:
    """Rows `part` of a loaded image as one gray channel (a colour file must be gray: R == G == B)."""
    arr = np.asarray(img.crop((0, part.start, img.width, part.stop)))
    if arr.ndim == 3:
        if mode not in ("RGB", "RGBA", "LA") or (
            mode != "LA" and not (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2]))
        ):
            raise DecodeError(f"colour image ({mode}) is not a grayscale mammogram")
        arr = arr[..., 0]
    return arr


def _image_strips(img: Image.Image, multiple: int = 1) -> Iterator[tuple[slice, np.ndarray]]:
    """Presentation values (float32 [0, 1]) of a loaded image, strip by strip.

    Colour files are accepted only when every pixel is gray (R == G == B), as some
    exporters write grayscale mammograms as RGB. 16-bit files carry 10-16 significant
    bits with no window, so they are stretched like a DICOM without one.
    """
    mode = img.mode
    rows = _strips(img.height, img.width, multiple=multiple)

    def gray(part: slice) -> np.ndarray:
        return _gray(img, mode, part)

    dtype = gray(rows[0]).dtype if rows else np.dtype(np.uint8)
    if dtype == np.uint8:

        def present(arr: np.ndarray) -> np.ndarray:
            return arr.astype(np.float32) / 255.0
    elif dtype == np.bool_:

        def present(arr: np.ndarray) -> np.ndarray:
            return arr.astype(np.float32)
    elif np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating):
        floating = np.issubdtype(dtype, np.floating)
        lows, highs = [], []
        for part in rows:
            arr = gray(part)
            lows.append(float(np.nanmin(arr) if floating else arr.min()))
            highs.append(float(np.nanmax(arr) if floating else arr.max()))
        low, high = (float(np.nanmin(lows)), float(np.nanmax(highs))) if floating else (min(lows), max(highs))

        def present(arr: np.ndarray) -> np.ndarray:
            return _normalise(arr, low, high)
    else:
        raise DecodeError(f"unsupported pixel type {dtype} ({mode})")

    for part in rows:
        yield part, present(gray(part))


def _loaded(img: Image.Image) -> Image.Image:
    try:
        img.load()
    except Exception:
        raise DecodeError("the image data is damaged or truncated and cannot be decoded") from None
    return img


def looks_inverted(image: np.ndarray) -> bool:
    """True when a grayscale mammogram (float in [0, 1], or uint8) is stored inverted (bright background, dark breast).

    Image files carry no PhotometricInterpretation, and about one RSNA re-export in
    six is a MONOCHROME1 image written without inverting it. Two signs must agree,
    on a coarse copy: the border ring (mostly air beside the breast) is brighter
    than the middle of the image's range, and the brightest tenth of the range
    covers at least two thirds as much area as the darkest tenth. The second sign
    keeps a film whose bright edges and labels fill the border (mini-MIAS mdb274)
    the right way round. On the shared sets: 388 of 2,268 RSNA images and none of
    the 216 mini-MIAS images are inverted, and every image checked by eye agreed.
    """
    image = np.asarray(image)
    scale = 255.0 if image.dtype == np.uint8 else 1.0  # an 8-bit picture is read as is, never copied to float
    factor = max(1, max(image.shape) // 64)
    rows, cols = image.shape[0] // factor, image.shape[1] // factor
    if rows < 8 or cols < 8:
        return False
    small = image[: rows * factor, : cols * factor].reshape(rows, factor, cols, factor).mean(axis=(1, 3)) / scale
    ring = np.concatenate([small[:3].ravel(), small[-3:].ravel(), small[:, :3].ravel(), small[:, -3:].ravel()])
    low, high = np.percentile(small, 1), np.percentile(small, 99)
    span = max(float(high - low), 1e-3)
    bright_border = (float(np.median(ring)) - low) / span > 0.5
    dark_area = float(np.mean(small <= low + 0.1 * span))
    bright_area = float(np.mean(small >= high - 0.1 * span))
    return bool(bright_border and dark_area < 1.5 * bright_area)


def image_to_float(source: str | Path | BinaryIO, *, fix_inversion: bool = True) -> np.ndarray:
    """A PNG, JPEG, PGM or TIFF (8 or 16 bit grayscale) as float32 in [0, 1], dense tissue bright.

    With `fix_inversion`, an image that `looks_inverted` is turned the right way round:
    an image file has no photometric tag to say which way round it was stored.
    """
    with open_image(source) as img:
        out = np.empty((img.height, img.width), dtype=np.float32)
        for part, shown in _image_strips(_loaded(img)):
            out[part] = shown
    if fix_inversion and looks_inverted(out):
        np.subtract(1.0, out, out=out)
    return out


def image_to_uint8(
    source: str | Path | BinaryIO,
    *,
    max_side: int | None = None,
    max_pixels: int = MAX_IMAGE_PIXELS,
    fix_inversion: bool = True,
) -> np.ndarray:
    """The 8-bit picture of `image_to_float` (round(value * 255)), shrunk while it is made so
    that its longest side is at most `max_side` (None: full size). Raises DecodeError."""
    with open_image(source, max_pixels=max_pixels) as img:
        shrink = _Shrink(img.height, img.width, max_side)
        for part, shown in _image_strips(_loaded(img), multiple=shrink.factor):
            shrink.add(part, _to_uint8(shown))
    out = shrink.result()
    if fix_inversion and looks_inverted(out):
        out = 255 - out  # shown the right way round, like image_to_float's
    return out


def image_stored_values(
    source: str | Path | BinaryIO, *, max_pixels: int = MAX_IMAGE_PIXELS
) -> tuple[np.ndarray, float, float, bool]:
    """An image file's stored gray values, as `image_to_uint8` reads them, for a viewer that windows them.

    Returns (pixels: uint8, or uint16 for a 16-bit file; low, high: the values `image_to_float` stretches
    to black and white (0 and 255 for an 8-bit file); inverted: `looks_inverted` said it is stored
    dark-on-bright, so it is shown inverted). Raises DecodeError.
    """
    with open_image(source, max_pixels=max_pixels) as img:
        _loaded(img)
        pixels = _gray(img, img.mode, slice(0, img.height))
    if pixels.dtype == np.bool_:
        pixels, low, high = pixels.astype(np.uint8), 0.0, 1.0
    elif pixels.dtype == np.uint8:
        low, high = 0.0, 255.0
    elif np.issubdtype(pixels.dtype, np.integer) and pixels.size and pixels.min() >= 0 and pixels.max() <= 65535:
        pixels = pixels.astype(np.uint16, copy=False)
        low, high = float(pixels.min()), float(pixels.max())
    else:
        raise DecodeError(f"unsupported pixel type {pixels.dtype} for the viewer")
    shown = np.empty(pixels.shape, dtype=np.uint8)  # the 8-bit picture, made strip by strip (no float copy)
    for start in range(0, pixels.shape[0], 512):
        shown[start : start + 512] = _to_uint8(_normalise(pixels[start : start + 512], low, high))
    return pixels, low, high, looks_inverted(shown)
