"""The stored values' range the render worker records (Image.stored_min / stored_max): the viewer's first paint
windows with it when the header has no window (static/viewer/src/fastpaint.js), so it must be the range the
viewer's DICOM loader finds itself: stored values, sign-extended from Bits Stored when signed, never masked."""

from __future__ import annotations

import io
from unittest import mock

import numpy as np
import pytest

from screening.intake.services.ingest import ingest_file
from screening.intake.services.media import stored_range
from screening.intake.services.renditions import render_image
from screening.models import Image
from tests.dicom_factory import dcmtk_compress, mg_dataset, phantom, to_bytes

pytestmark = pytest.mark.django_db


def rendered(ds) -> Image:
    with mock.patch("screening.dispatch.send"):
        image = ingest_file(file=io.BytesIO(to_bytes(ds)), filename="x.dcm").image
    assert render_image(image.pk) == "ready"
    return Image.objects.get(pk=image.pk)


def test_the_render_records_the_range_of_unsigned_stored_values():
    pixels = phantom(300, 240, bits=14, seed=3)
    image = rendered(mg_dataset(pixels, bits=14))
    assert (image.stored_min, image.stored_max) == (int(pixels.min()), int(pixels.max()))


def test_signed_values_are_sign_extended_from_bits_stored_as_the_viewer_does():
    ds = mg_dataset(phantom(200, 160, bits=12, seed=4), bits=12)
    values = np.array([-2048, -5, 0, 7, 2047] * 6400, dtype=np.int16).reshape(200, 160)
    ds.PixelRepresentation = 1
    ds.PixelData = (values.astype(np.int32) & 0x0FFF).astype(np.uint16).tobytes()  # 12 bits, high bits zero
    image = rendered(ds)
    # Read as 16-bit values, -2048 stored in 12 bits is 2048 and -5 is 4091: the viewer sign-extends both.
    assert (image.stored_min, image.stored_max) == (-2048, 2047)


def test_unsigned_values_are_not_masked_to_bits_stored_as_the_viewer_does_not():
    pixels = phantom(120, 100, bits=12, seed=5)
    pixels[0, 0] = 0xF000  # garbage in the unused high bits: the loader (and the cell's window) keeps it
    image = rendered(mg_dataset(pixels, bits=12))
    assert image.stored_max == 0xF000


def test_compressed_pixel_data_has_no_range_the_viewer_decodes_it_itself():
    image = rendered(dcmtk_compress(mg_dataset(phantom(120, 100, bits=12, seed=6), bits=12), "dcmcjpls"))
    assert image.rendition and (image.stored_min, image.stored_max) == (None, None)
    assert stored_range(image) is None
