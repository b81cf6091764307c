"""An uploaded picture's pixels for the case viewer: its stored values as DICOM, windowed as the renditions.

The viewer reads every image through Cornerstone's DICOM loader (full bit depth, window, probe, presets);
a PNG or JPEG reaches it as a Part 10 file of the picture's stored values. What the screen then shows is
checked in a real Chromium (tests/browser/test_viewer_inputs.py).
"""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from django.core.files.storage import default_storage
from django.urls import reverse
from PIL import Image as PILImage

from screening.intake.services import renditions
from screening.models import Image
from tests.dicom_factory import mg_dataset, to_bytes
from tests.uploads import png_bytes, upload

pytestmark = pytest.mark.django_db


def picture(api, content: bytes, name: str = "picture.png", patient_id: str = "P-PIX") -> Image:
    response = upload(api, content, name, patient_id=patient_id, laterality="L", view="CC")
    assert response.status_code == 201, response.content
    return Image.objects.get(pk=response.json()["id"])


def pixels_of(client, image: Image):
    response = client.get(reverse("api-image-pixels", args=[image.pk]), HTTP_ACCEPT="application/dicom")
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/dicom" and response["Cache-Control"] == "no-store"
    return pydicom.dcmread(io.BytesIO(response.content))


def test_a_16_bit_png_reaches_the_viewer_at_full_bit_depth_over_its_range(api, rad_api):
    stored = np.tile(np.linspace(1000, 41000, 300).astype(np.uint16), (200, 1))
    image = picture(api, png_bytes(stored))
    ds = pixels_of(rad_api, image)
    assert (ds.BitsAllocated, ds.BitsStored, ds.PhotometricInterpretation) == (16, 16, "MONOCHROME2")
    assert np.array_equal(ds.pixel_array, stored)
    # Black at the lowest stored value, white at the highest: the stretch the renditions make.
    assert (float(ds.WindowCenter), float(ds.WindowWidth), ds.VOILUTFunction) == (21000, 40000, "LINEAR_EXACT")
    # No patient data travels in it.
    assert "PatientID" not in ds and "PatientName" not in ds and "StudyInstanceUID" not in ds


def test_an_8_bit_jpeg_is_its_decoded_values_from_black_to_white(api, rad_api):
    buffer = io.BytesIO()
    PILImage.fromarray(np.tile(np.linspace(20, 235, 256).astype(np.uint8), (64, 1))).convert("RGB").save(
        buffer, format="JPEG", quality=95
    )
    image = picture(api, buffer.getvalue(), "picture.jpg")
    ds = pixels_of(rad_api, image)
    assert (ds.BitsAllocated, ds.PhotometricInterpretation) == (8, "MONOCHROME2")
    with PILImage.open(io.BytesIO(buffer.getvalue())) as decoded:
        assert np.array_equal(ds.pixel_array, np.asarray(decoded)[..., 0])
    assert (float(ds.WindowCenter), float(ds.WindowWidth)) == (127.5, 255)


def test_a_picture_stored_inverted_is_shown_inverted_as_its_rendition_is(api, rad_api):
    from tests.browser.conftest import synthetic_mammogram

    tissue = (synthetic_mammogram("CC", seed=2) // 16).astype(np.uint8)
    image = picture(api, png_bytes(255 - tissue))
    ds = pixels_of(rad_api, image)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    assert np.array_equal(ds.pixel_array, 255 - tissue)  # the stored values; the viewer inverts them
    rendition = renditions.decode_original(image, as_uint8=True)
    assert np.array_equal(rendition, tissue)  # the server's own picture: the same way round


def test_a_dicom_image_is_its_stored_original(api, rad_api):
    content = to_bytes(mg_dataset(patient_id="P-PIXD"))
    dicom = Image.objects.get(pk=upload(api, content).json()["id"])
    response = rad_api.get(reverse("api-image-pixels", args=[dicom.pk]), HTTP_ACCEPT="application/dicom")
    assert response.status_code == 200 and response["Content-Type"] == "application/dicom"
    assert b"".join(response.streaming_content) == content


def test_a_damaged_or_missing_picture_answers_a_clear_error(api, rad_api):
    broken = picture(api, png_bytes(np.full((32, 32), 7, np.uint8)), patient_id="P-PIXB")
    with default_storage.open(broken.original.name, "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n damaged")
    response = rad_api.get(reverse("api-image-pixels", args=[broken.pk]), HTTP_ACCEPT="application/dicom")
    assert response.status_code == 409 and response.json()["error"]["code"] == "invalid_pixel_data"
    missing = picture(api, png_bytes(np.full((32, 32), 9, np.uint8)), patient_id="P-PIXM")
    default_storage.delete(missing.original.name)
    response = rad_api.get(reverse("api-image-pixels", args=[missing.pk]))
    assert response.status_code == 409 and response.json()["error"]["code"] == "missing_file"


def test_another_accounts_picture_is_not_found(api, anon_api, rad_api, radiologist):
    from screening.intake.services.ingest import ingest_file

    theirs = ingest_file(
        file=io.BytesIO(png_bytes(np.full((32, 32), 50, np.uint8))),
        filename="theirs.png",
        patient_id="P-THEIRS",
        user=radiologist,
    ).image
    url = reverse("api-image-pixels", args=[theirs.pk])
    assert api.get(url, HTTP_ACCEPT="application/dicom").status_code == 404  # a client sees its own uploads
    assert anon_api.get(url).status_code == 401
    assert rad_api.get(url, HTTP_ACCEPT="application/dicom").status_code == 200
