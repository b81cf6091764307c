"""Renditions: the pictures browsers show, made by a worker (queue "render") after ingest has answered.

Ingest stores the original and queues `render_image` after its commit; the worker decodes
the original once and stores the display PNG (longest side PORTAL_RENDITION_MAX_SIDE), its
preview (the display PNG scaled down to PREVIEW_MAX_SIDE, an 8-bit JPEG the viewer paints
first) and, for an image larger than the display PNG, the full-resolution PNG the viewer
fetches when zoomed in.
Pixel data that turns out to be undecodable makes the image *failed* with its reason
(`Image.error`), shown on the case and in the API; it is never retried. The work is claimed
with a conditional UPDATE and a file exists only for a row that names it, so a duplicated or
redelivered task is harmless. A render worker that dies leaves the image without a rendition:
the sweeper sends its task again after PORTAL_RENDER_STALE_SECONDS and fails it after
PORTAL_RENDER_MAX_ATTEMPTS tries. Until then pages and the API show a placeholder.
"""

from __future__ import annotations

import io
import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from PIL import Image as PILImage
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from ml.io import DecodeError, image_stored_values
from screening import dispatch
from screening.core.storage import delete_stored
from screening.errors import PortalError
from screening.intake.services.media import decode_original, stored_range
from screening.models import Image

log = logging.getLogger(__name__)

RENDER = "screening.tasks.render_image"
PENDING, READY, FAILED = "pending", "ready", "failed"

# How long a decode in a web process (embedded mode, a full-resolution PNG made on demand)
# waits for a slot before it is answered 503.
_DECODE_WAIT_SECONDS = 120
_decode_slots: tuple[int, threading.BoundedSemaphore] | None = None
_decode_slots_lock = threading.Lock()


def rendition_state(image: Image) -> str:
    """pending (not made yet), ready, or failed (`image.error` says why)."""
    if image.rendition:
        return READY
    return FAILED if image.error else PENDING


def queue_render(image: Image) -> None:
    """Make the image's renditions on the render queue once the current transaction commits."""
    dispatch.after_commit(RENDER, image.pk)


@contextmanager
def decode_slot() -> Iterator[None]:
    """At most PORTAL_MAX_CONCURRENT_DECODES decodes of this process at once, so the memory one
    process spends on decoding stays a small multiple of one image's."""
    global _decode_slots
    limit = settings.PORTAL_MAX_CONCURRENT_DECODES
    with _decode_slots_lock:
        if _decode_slots is None or _decode_slots[0] != limit:
            _decode_slots = (limit, threading.BoundedSemaphore(limit))
        slots = _decode_slots[1]
    if not slots.acquire(timeout=_DECODE_WAIT_SECONDS):
        raise PortalError("the server is busy decoding other images; try again in a minute", code="busy", status=503)
    try:
        yield
    finally:
        slots.release()


# The preview's longest side: what the viewer paints first, while the full-depth pixels come in.
PREVIEW_MAX_SIDE = 1024
PREVIEW_QUALITY = 90


def full_resolution_name(sha256: str) -> str:
    """Where the full-resolution PNG of the image with this digest is stored, once made."""
    return f"full/{sha256[:2]}/{sha256}.png"


def preview_name(sha256: str) -> str:
    """Where the preview JPEG of the image with this digest is stored, once made."""
    return f"previews/{sha256[:2]}/{sha256}.jpg"


def _png(pixels: np.ndarray, compress_level: int) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(pixels, mode="L").save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def _jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(pixels, mode="L").save(buffer, format="JPEG", quality=PREVIEW_QUALITY)
    return buffer.getvalue()


def _scaled_size(rows: int, columns: int, max_side: int) -> tuple[int, int]:
    """(rows, columns) of a picture of this size scaled down to `max_side` (never up)."""
    longest = max(rows, columns)
    if longest <= max_side:
        return rows, columns
    scale = max_side / longest
    return max(1, round(rows * scale)), max(1, round(columns * scale))


def _shrink(pixels: np.ndarray, max_side: int) -> np.ndarray:
    """Whole k x k block means, then a box filter to the exact size (as ml.io does while decoding),
    longest side at most `max_side`; a picture that fits already is returned as it is."""
    rows, columns = pixels.shape
    size = _scaled_size(rows, columns, max_side)
    if size == (rows, columns):
        return pixels
    k = max(1, max(rows, columns) // max_side)
    picture = PILImage.fromarray(pixels)
    reduced = picture.reduce(k) if k > 1 else picture
    return np.asarray(reduced.resize(size[::-1], PILImage.Resampling.BOX, box=(0.0, 0.0, columns / k, rows / k)))


def _display(full: np.ndarray) -> np.ndarray:
    """The display picture, longest side at most PORTAL_RENDITION_MAX_SIDE."""
    return _shrink(full, settings.PORTAL_RENDITION_MAX_SIDE)


def _preview(display: np.ndarray) -> np.ndarray:
    """The preview's pixels: the display picture scaled down to PREVIEW_MAX_SIDE, its grey levels untouched."""
    return _shrink(display, PREVIEW_MAX_SIDE)


def _claim(image_id: int) -> Image | None:
    """Take the image for rendering unless it has a rendition or has failed already. An image
    whose renders keep killing their worker (redelivered each time) fails at the attempt limit."""
    limit = settings.PORTAL_RENDER_MAX_ATTEMPTS
    taken = Image.objects.filter(pk=image_id, rendition="", error="", render_attempts__lt=limit).update(
        render_attempts=F("render_attempts") + 1, render_started=timezone.now()
    )
    if taken:
        return Image.objects.filter(pk=image_id).first()
    if Image.objects.filter(pk=image_id, rendition="", error="").exists():
        fail_image(image_id, f"gave up after {limit} attempts: the render worker stopped or timed out each time")
    return None


def render_image(image_id: int) -> str:
    """Make the display PNG, its preview JPEG (and, when larger, the full-resolution PNG) of one
    image; returns its state.

    A duplicate task, or one for an image deleted meanwhile, does nothing. Undecodable pixel
    data fails the image with its reason. Storage and database errors propagate, for the task
    to retry; the files written by this call are removed again unless the row names them.
    """
    image = _claim(image_id)
    if image is None:
        return "skipped"
    try:
        with decode_slot():
            full = decode_original(image, as_uint8=True)
    except PortalError as exc:
        if exc.code == "busy":
            raise
        fail_image(image.pk, exc.message)
        return FAILED
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:  # a native decoder's panic (pyo3's PanicException) is no Exception: still bad data
        fail_image(image.pk, "the pixel data is damaged and cannot be decoded: its decoder gave up")
        return FAILED
    display = _display(full)
    key = uuid.uuid4().hex
    saved: list[str] = []
    updated = 0
    try:
        saved.append(default_storage.save(f"renditions/{key[:2]}/{key}.png", ContentFile(_png(display, 3))))
        saved += _save_preview(image.sha256, display)
        if display.shape != full.shape:
            saved += _save_full(image.sha256, full)
        with transaction.atomic():
            low, high = stored_range(image) or (None, None)  # the viewer's first paint windows with it
            updated = Image.objects.filter(pk=image.pk, rendition="", error="").update(
                rendition=saved[0], stored_min=low, stored_max=high
            )
    finally:
        if not updated:  # an error, a deleted image, or another worker finished first: nothing stays behind
            delete_stored(saved)
    return READY


def _save_full(sha256: str, full: np.ndarray) -> list[str]:
    """Store the full-resolution PNG under its digest's name; returns what this call wrote ([] when
    it exists already, or when a concurrent call took the name first)."""
    return _save_once(full_resolution_name(sha256), lambda: _png(full, 1))


def _save_preview(sha256: str, display: np.ndarray) -> list[str]:
    """Store the preview JPEG of this display picture under its digest's name; returns what this
    call wrote, as `_save_full` does."""
    return _save_once(preview_name(sha256), lambda: _jpeg(_preview(display)))


def _save_once(name: str, content) -> list[str]:
    """Store `content()` under `name` unless a file is there already; returns [name] when this call wrote it."""
    if default_storage.exists(name):
        return []
    saved = default_storage.save(name, ContentFile(content()))
    if saved != name:  # storage picked another name: someone else's file is already there
        default_storage.delete(saved)
        return []
    return [saved]


def fail_image(image_id: int, reason: str) -> None:
    """The image cannot be shown: failed, with its reason, and its study scored without it.

    Its prediction (if any) fails on its own when the model's decode meets the same damage;
    the study's status and scores are brought up to date here too, so it is never stuck.
    """
    from screening.ai.services.predictions import (
        update_exam_scores,  # predictions imports ingest, which imports this module
    )

    with transaction.atomic():
        changed = Image.objects.filter(pk=image_id, rendition="", error="").update(
            error=reason[:2000], status=Image.Status.FAILED
        )
        image = Image.objects.select_related("study").filter(pk=image_id).first()
        if changed and image is not None:
            update_exam_scores(image.study)
    if changed:
        log.warning("image %s failed: %s", image_id, reason)


def full_resolution_png(image: Image) -> str:
    """Storage name of the image's full-resolution 8-bit PNG.

    The render worker makes it with the rendition (for images larger than the display
    rendition, which is full size otherwise). Images rendered before it did so get it made
    here on first use. Raises PortalError while the image is not rendered or has failed.
    """
    state = rendition_state(image)
    if state != READY:
        raise not_rendered(image)
    if max(image.rows, image.columns) <= settings.PORTAL_RENDITION_MAX_SIDE:
        return image.rendition.name
    name = full_resolution_name(image.sha256)
    if default_storage.exists(name):
        return name
    with decode_slot():
        _save_full(image.sha256, decode_original(image, as_uint8=True))
    return name


def preview_jpeg(image: Image) -> str:
    """Storage name of the image's preview JPEG (the display rendition scaled down to PREVIEW_MAX_SIDE).

    The render worker makes it with the rendition. Images rendered before it did so get it made
    here on first use, from the stored rendition. Raises PortalError while the image is not
    rendered or has failed, or when its stored rendition cannot be read.
    """
    if rendition_state(image) != READY:
        raise not_rendered(image)
    name = preview_name(image.sha256)
    if default_storage.exists(name):
        return name
    try:
        with default_storage.open(image.rendition.name, "rb") as fh, PILImage.open(fh) as picture:
            display = np.asarray(picture.convert("L"))
    except (OSError, ValueError, PILImage.DecompressionBombError):  # missing, truncated, not a picture
        raise PortalError(
            "the stored rendition of this image cannot be read", code="missing_file", status=409
        ) from None
    _save_preview(image.sha256, display)
    return name


SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def picture_as_dicom(image: Image) -> bytes:
    """An uploaded picture's stored values as a Part 10 file for the viewer's DICOM loader: full bit depth
    (8 or 16 bits), displayed as the renditions show it (a LINEAR_EXACT window over the range they
    stretch, MONOCHROME1 where they invert it). So the viewer windows, probes and resets a PNG or JPEG
    as it does a DICOM. Carries no patient data and is made on request, never stored. Raises PortalError."""
    try:
        with decode_slot(), default_storage.open(image.original.name, "rb") as fh:
            pixels, low, high, inverted = image_stored_values(fh)
    except FileNotFoundError:
        raise PortalError("the stored original file is missing", code="missing_file", status=409) from None
    except DecodeError as exc:
        raise PortalError(str(exc), code="invalid_pixel_data", status=409) from exc
    bits = 8 if pixels.dtype == np.uint8 else 16
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[image.sha256])
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SECONDARY_CAPTURE
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if inverted else "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.WindowCenter = f"{(low + high) / 2:g}"
    ds.WindowWidth = f"{max(high - low, 1):g}"
    ds.WindowCenterWidthExplanation = "AS UPLOADED"
    ds.VOILUTFunction = "LINEAR_EXACT"  # black at `low`, white at `high`: the renditions' stretch
    data = pixels.astype("<u2" if bits == 16 else np.uint8, copy=False).tobytes()
    ds.PixelData = data + b"\0" * (len(data) % 2)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def not_rendered(image: Image) -> PortalError:
    """The answer for a picture asked for before it exists, or of an image that failed."""
    if image.error:
        return PortalError(f"this image failed: {image.error}", code="image_failed", status=409)
    return PortalError(
        "this image is still being prepared; try again in a few seconds", code="not_rendered", status=409
    )


def placeholder_png(image: Image) -> bytes:
    """A mid-grey PNG of the size the display rendition will have, for pages that show the image
    before the render worker has made it (the viewer lays it out at the right size meanwhile)."""
    rows, columns = _scaled_size(image.rows, image.columns, settings.PORTAL_RENDITION_MAX_SIDE)
    return _png(np.full((rows, columns), 64, np.uint8), 9)


def placeholder_jpeg(image: Image) -> bytes:
    """The preview's placeholder: a mid-grey JPEG of the size the preview will have."""
    rows, columns = _scaled_size(image.rows, image.columns, settings.PORTAL_RENDITION_MAX_SIDE)
    return _jpeg(np.full(_scaled_size(rows, columns, PREVIEW_MAX_SIDE), 64, np.uint8))


def sweep(now=None) -> dict[str, int]:
    """Send the render task again for images left without a rendition (a dead render worker, a
    lost task); fail those tried PORTAL_RENDER_MAX_ATTEMPTS times. Periodic, with the others."""
    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.PORTAL_RENDER_STALE_SECONDS)
    counts = {"render_resent": 0, "render_failed": 0}
    waiting = Image.objects.filter(rendition="", error="", created__lt=stale).exclude(render_started__gte=stale)
    for image_id, attempts in waiting.values_list("pk", "render_attempts"):
        if attempts >= settings.PORTAL_RENDER_MAX_ATTEMPTS:
            fail_image(image_id, f"gave up after {attempts} attempts: the render worker stopped or timed out each time")
            counts["render_failed"] += 1
        elif Image.objects.filter(pk=image_id, rendition="", error="").update(render_started=now):
            dispatch.after_commit(RENDER, image_id)
            counts["render_resent"] += 1
    if any(counts.values()):
        log.info("render sweep: %s", counts)
    return counts
