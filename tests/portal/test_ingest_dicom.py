"""DICOM decoding on ingest: transfer syntaxes, photometric interpretations, LUTs, views, a real-world corpus."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image as PILImage

from screening.intake.services import renditions
from screening.models import Image
from tests.conftest import stored_files
from tests.dicom_factory import (
    MG_PRESENTATION,
    MG_PROCESSING,
    dcmtk_compress,
    implicit_vr,
    jpeg2000_lossless,
    mg_dataset,
    phantom,
    rle_lossless,
    to_bytes,
)

pytestmark = pytest.mark.django_db
URL = "/api/v1/images/"


def ingest(api, content: bytes, **fields) -> dict:
    response = api.post(URL, {"file": SimpleUploadedFile("x.dcm", content), **fields}, format="multipart")
    assert response.status_code in (200, 201), response.json()
    return response.json()


def rendition(image_id: int) -> np.ndarray:
    renditions.render_image(image_id)  # the render worker's task (no worker runs in these tests)
    with default_storage.open(Image.objects.get(pk=image_id).rendition.name) as fh:
        return np.asarray(PILImage.open(io.BytesIO(fh.read())))


def test_explicit_vr_reference_rendition_spans_the_display_range(api):
    pixels = rendition(ingest(api, to_bytes(mg_dataset()))["id"])
    assert pixels.dtype == np.uint8 and pixels.shape == (256, 200)
    assert pixels.min() == 0 and pixels.max() == 255


@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(implicit_vr, id="implicit-vr"),
        pytest.param(rle_lossless, id="rle"),
        pytest.param(jpeg2000_lossless, id="jpeg2000-lossless"),
        pytest.param(lambda ds: dcmtk_compress(ds, "dcmcjpls", "--encode-lossless"), id="jpeg-ls-lossless"),
        pytest.param(lambda ds: dcmtk_compress(ds, "dcmcjpeg", "--encode-lossless-sv1"), id="jpeg-lossless-sv1"),
    ],
)
@pytest.mark.parametrize("bits", [12, 16])
def test_lossless_transfer_syntaxes_give_the_uncompressed_rendition(api, encode, bits):
    pixels = phantom(bits=bits, seed=bits)
    reference = rendition(ingest(api, to_bytes(mg_dataset(pixels, bits=bits, patient_id="REF")))["id"])
    encoded = encode(mg_dataset(pixels, bits=bits, patient_id="ENC"))
    body = ingest(api, to_bytes(encoded))
    assert Image.objects.get(pk=body["id"]).bits_stored == bits
    assert (
        pydicom.dcmread(io.BytesIO(to_bytes(encoded))).file_meta.TransferSyntaxUID
        == encoded.file_meta.TransferSyntaxUID
    )
    np.testing.assert_array_equal(rendition(body["id"]), reference)


def test_monochrome1_and_monochrome2_of_the_same_anatomy_render_the_same(api):
    pixels = phantom(bits=12)
    mono2 = mg_dataset(pixels, photometric="MONOCHROME2", patient_id="A")
    mono1 = mg_dataset((4095 - pixels).astype(np.uint16), photometric="MONOCHROME1", patient_id="B")
    a = rendition(ingest(api, to_bytes(mono2))["id"]).astype(int)
    b = rendition(ingest(api, to_bytes(mono1))["id"]).astype(int)
    assert np.abs(a - b).max() <= 1
    # Dense tissue is bright in both: the blob is brighter than the background.
    assert b[128, 70] > b[5, 195]


def test_window_centre_and_width_are_applied(api):
    pixels = phantom(bits=12)
    ds = mg_dataset(pixels, window=(2000, 400))
    shown = rendition(ingest(api, to_bytes(ds))["id"])
    assert shown[pixels <= 1790].max() == 0
    assert shown[pixels >= 2210].min() == 255


def test_a_voi_lut_sequence_is_applied(api):
    pixels = phantom(bits=12)
    lut = (65535 - np.arange(4096) * 16).clip(0, 65535)  # an inverting LUT
    shown = rendition(ingest(api, to_bytes(mg_dataset(pixels, voi_lut=lut)))["id"]).astype(int)
    expected = np.round(lut[pixels] / 65535 * 255).astype(int)
    assert np.abs(shown - expected).max() <= 1


def test_the_modality_lut_is_applied_before_the_window(api):
    pixels = phantom(bits=12)
    ds = mg_dataset(pixels, window=(4000, 400))
    ds.RescaleSlope, ds.RescaleIntercept = 2, 0
    shown = rendition(ingest(api, to_bytes(ds))["id"])
    assert shown[pixels * 2 >= 4210].min() == 255


def test_missing_laterality_is_stored_as_unknown_or_taken_from_the_uploader(api):
    first = ingest(api, to_bytes(mg_dataset(laterality=None, patient_id="A")))
    assert first["laterality"] == "U"
    second = ingest(api, to_bytes(mg_dataset(laterality=None, patient_id="B", seed=3)), laterality="R")
    assert second["laterality"] == "R"


def test_the_dicom_laterality_wins_over_the_uploader(api):
    assert ingest(api, to_bytes(mg_dataset(laterality="L")), laterality="R")["laterality"] == "L"


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (("399162004", "cranio-caudal"), "CC"),
        (("R-10226", "medio-lateral oblique"), "MLO"),
        (("X", "latero-medial"), "OTHER"),
    ],
)
def test_the_view_comes_from_the_view_code_sequence(api, code, expected):
    assert ingest(api, to_bytes(mg_dataset(view=None, view_code=code)))["view"] == expected


def test_for_processing_images_are_accepted(api):
    body = ingest(api, to_bytes(mg_dataset(sop_class=MG_PROCESSING)))
    assert Image.objects.get(pk=body["id"]).presentation_intent == "FOR PROCESSING"


def _corpus() -> list[Path]:
    folder = Path(pydicom.__file__).parent / "data" / "test_files"
    return sorted(p for p in folder.glob("*.dcm"))


def _as_mammogram(path: Path) -> bytes | None:
    """The same file claiming to be MG, so its odd pixel data reaches the decoder."""
    try:
        ds = pydicom.dcmread(path, force=True)
        ds.Modality = "MG"
        ds.SOPClassUID = MG_PRESENTATION
        if getattr(ds, "file_meta", None) is not None:
            ds.file_meta.MediaStorageSOPClassUID = MG_PRESENTATION
        buffer = io.BytesIO()
        ds.save_as(buffer)
        return buffer.getvalue()
    except Exception:
        return None


@pytest.mark.parametrize("path", _corpus(), ids=lambda p: p.name)
def test_every_pydicom_test_file_is_ingested_or_rejected_cleanly(api, media_root, path):
    for content in (path.read_bytes(), _as_mammogram(path)):
        if content is None:
            continue
        before_files, before_rows = stored_files(media_root), Image.objects.count()
        response = api.post(URL, {"file": SimpleUploadedFile(path.name, content)}, format="multipart")
        assert response.status_code in (200, 201, 400, 413, 415), response.content[:300]
        if response.status_code >= 400:
            assert response.json()["error"]["message"]
            assert stored_files(media_root) == before_files
            assert Image.objects.count() == before_rows
        else:
            assert Image.objects.filter(pk=response.json()["id"]).exists()
