"""The simple statistics of an image that drift monitoring watches, read from the stored original.

A worker computes them (decoding takes up to a second for a full-field mammogram); the web
process never does. The breast is found with the model's own mask (ml.preprocess.breast_mask),
so "breast" means here what it means to the model.
"""

from __future__ import annotations

import pydicom
from django.core.files.storage import default_storage
from django.db import IntegrityError

from ml.config import ModelConfig
from ml.preprocess import breast_mask
from screening.errors import PortalError
from screening.intake.services.media import decode_original
from screening.models import Image, ImageStats
from screening.monitoring.selectors import ingest_channel


def _header(image: Image) -> dict:
    if image.file_format != Image.Format.DICOM:
        return {"photometric": image.photometric, "bits_stored": image.bits_stored}
    try:
        with default_storage.open(image.original.name, "rb") as fh:
            ds = pydicom.dcmread(fh, stop_before_pixels=True, force=True)
    except Exception:  # a damaged or missing file: the pixel step reports it
        return {"photometric": image.photometric, "bits_stored": image.bits_stored}
    spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    try:
        spacing = float(spacing[0]) if spacing else None
    except (TypeError, ValueError, IndexError):
        spacing = None
    return {
        "manufacturer": str(ds.get("Manufacturer", "") or "")[:64],
        "model_name": str(ds.get("ManufacturerModelName", "") or "")[:64],
        "pixel_spacing": spacing if spacing and spacing > 0 else None,
        "bits_stored": image.bits_stored,
        "photometric": image.photometric,
    }


def compute_stats(image: Image) -> ImageStats:
    """Compute and store one image's statistics (kept once made; an unreadable image keeps its reason)."""
    fields = {"manufacturer": image.manufacturer, **_header(image), "source": ingest_channel(image.pk)}
    try:
        pixels = decode_original(image)
    except PortalError as exc:
        fields["error"] = exc.message[:200]
    else:
        mask, factor = breast_mask(pixels, ModelConfig())
        cells = int(mask.sum())
        rows, cols = mask.shape
        # Block means over the mask's cells: the mean presentation value of the breast, at the mask's scale.
        blocks = pixels[: rows * factor, : cols * factor].reshape(rows, factor, cols, factor).mean(axis=(1, 3))
        fields["mean_intensity"] = float(blocks[mask].mean()) if cells else None
        fields["breast_fraction"] = float(mask.mean())
        if fields.get("pixel_spacing"):
            fields["breast_area_cm2"] = float(cells * factor * factor * fields["pixel_spacing"] ** 2 / 100.0)
    try:
        return ImageStats.objects.create(image=image, **fields)
    except IntegrityError:  # another run made them meanwhile
        return ImageStats.objects.get(image=image)
