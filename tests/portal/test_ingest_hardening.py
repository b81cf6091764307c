"""Ingest refuses what would corrupt a record or exhaust the server, and says exactly why."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import JPEG2000Lossless

from screening.errors import PortalError
from screening.intake.services import renditions
from screening.intake.services.ingest import ingest_file
from screening.models import Image, Patient, Study
from tests.conftest import stored_files
from tests.dicom_factory import corrupt_file_meta_length, mg_dataset, phantom, set_raw, to_bytes
from tests.uploads import png_bytes, upload

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def assert_refused(response, status: int, message: str, media_root) -> None:
    assert response.status_code == status, response.content[:300]
    assert response.json()["error"]["message"] == message
    assert Image.objects.count() == 0 and Study.objects.count() == 0 and Patient.objects.count() == 0
    assert stored_files(media_root) == []


# --- presentation values ------------------------------------------------------------------

FINITE = "expected a finite number no larger than 1e+09"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"WindowCenter": float("nan"), "WindowWidth": 400}, f"WindowCenter is nan; {FINITE}"),
        ({"WindowCenter": 2000, "WindowWidth": float("nan")}, f"WindowWidth is nan; {FINITE}"),
        ({"WindowCenter": float("inf"), "WindowWidth": 400}, f"WindowCenter is inf; {FINITE}"),
        ({"WindowCenter": float("-inf"), "WindowWidth": 400}, f"WindowCenter is -inf; {FINITE}"),
        ({"WindowCenter": 1e308, "WindowWidth": 400}, f"WindowCenter is 1e+308; {FINITE}"),
        ({"WindowCenter": 2000, "WindowWidth": -1e308}, f"WindowWidth is -1e+308; {FINITE}"),
        ({"WindowCenter": [2000, float("nan")], "WindowWidth": [400, 300]}, f"WindowCenter is nan; {FINITE}"),
        ({"WindowCenter": 2000, "WindowWidth": 0}, "WindowWidth is 0; expected a number above 0"),
        ({"WindowCenter": 2000, "WindowWidth": -5}, "WindowWidth is -5; expected a number above 0"),
        ({"RescaleSlope": float("nan"), "RescaleIntercept": 0}, f"RescaleSlope is nan; {FINITE}"),
        ({"RescaleSlope": float("inf"), "RescaleIntercept": 0}, f"RescaleSlope is inf; {FINITE}"),
        ({"RescaleSlope": 1, "RescaleIntercept": float("-inf")}, f"RescaleIntercept is -inf; {FINITE}"),
        ({"RescaleSlope": 1e308, "RescaleIntercept": 0}, f"RescaleSlope is 1e+308; {FINITE}"),
        ({"RescaleSlope": 1, "RescaleIntercept": -1e308}, f"RescaleIntercept is -1e+308; {FINITE}"),
        ({"RescaleSlope": 0, "RescaleIntercept": 0}, "RescaleSlope is 0, which would make every pixel the same value"),
    ],
)
def test_non_finite_or_absurd_presentation_values_are_refused_naming_the_attribute(api, media_root, values, message):
    ds = mg_dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    assert_refused(upload(api, to_bytes(ds)), 400, message, media_root)


def test_a_window_that_is_not_a_number_is_refused_naming_the_attribute(api, media_root):
    ds = set_raw(mg_dataset(window=(2000, 400)), "WindowCenter", "abc")
    assert_refused(upload(api, to_bytes(ds)), 400, "WindowCenter is not a number", media_root)


def _voi_lut(descriptor: list[int], entries: int) -> Dataset:
    ds = mg_dataset(voi_lut=np.arange(4096) * 16)
    ds.VOILUTSequence[0].LUTDescriptor = descriptor
    ds.VOILUTSequence[0][0x00283006].value = (np.arange(entries) * 16).astype("<u2").tobytes()
    return ds


@pytest.mark.parametrize(
    ("descriptor", "entries", "message"),
    [
        ([4096, 0, 40], 4096, "the LUTDescriptor of VOILUTSequence gives 40 bits per entry, which is not supported"),
        ([4096, 0, 16], 100, "the LUTData of VOILUTSequence holds 100 entries; its LUTDescriptor says 4096"),
    ],
)
def test_a_voi_lut_whose_descriptor_does_not_fit_its_data_is_refused(api, media_root, descriptor, entries, message):
    assert_refused(upload(api, to_bytes(_voi_lut(descriptor, entries))), 400, message, media_root)


# --- UIDs and identifiers -----------------------------------------------------------------

UID_MESSAGE = "is not a valid DICOM UID (digits and dots, no leading zeros, at most 64 characters)"


@pytest.mark.parametrize("keyword", ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"])
@pytest.mark.parametrize(
    "value",
    ["../../etc/passwd", "1.2.840.01", "1..2", "1.2.", "1.2.3a", "1.2 .3", "1." + "2" * 63],
    ids=["path", "leading-zero", "empty-component", "trailing-dot", "letter", "space", "65-characters"],
)
def test_an_invalid_uid_is_refused_naming_the_attribute(api, media_root, keyword, value):
    ds = set_raw(mg_dataset(), keyword, value)
    assert_refused(upload(api, to_bytes(ds)), 400, f"{keyword} {UID_MESSAGE}", media_root)


def test_uids_with_a_lone_zero_component_and_64_characters_are_accepted(api):
    study_uid = "1.2.0.3." + "4" * 56
    assert len(study_uid) == 64
    response = upload(api, to_bytes(mg_dataset(study_uid=study_uid, sop_uid="1.0.2.0")))
    assert response.status_code == 201, response.json()
    assert Study.objects.get().study_uid == study_uid and Image.objects.get().sop_uid == "1.0.2.0"


def test_two_patient_ids_over_64_characters_are_both_refused_not_merged(api, media_root):
    stem = "P" * 64
    message = (
        "PatientID is 80 characters long, over the 64 DICOM allows; it is refused, not cut, "
        "so that it cannot be taken for another record"
    )
    for tail in ("A" * 16, "B" * 16):
        ds = set_raw(mg_dataset(seed=len(tail)), "PatientID", stem + tail)
        assert_refused(upload(api, to_bytes(ds)), 400, message, media_root)


def test_an_accession_number_over_16_characters_is_refused_not_cut(api, media_root):
    for tail in ("A", "B"):
        ds = set_raw(mg_dataset(), "AccessionNumber", "ACC" + "0" * 16 + tail)
        response = upload(api, to_bytes(ds))
        assert_refused(
            response,
            400,
            "AccessionNumber is 20 characters long, over the 16 DICOM allows; it is refused, not cut, "
            "so that it cannot be taken for another record",
            media_root,
        )


def test_a_patient_id_with_several_values_is_refused(api, media_root):
    ds = set_raw(mg_dataset(), "PatientID", "A\\B")
    assert_refused(upload(api, to_bytes(ds)), 400, "PatientID holds 2 values; expected one", media_root)


def test_an_image_file_with_an_accession_number_over_16_characters_is_refused(media_root):
    with pytest.raises(PortalError) as caught:
        ingest_file(
            file=io.BytesIO(png_bytes(np.zeros((32, 32), np.uint8))),
            filename="x.png",
            patient_id="P-1",
            accession_number="A" * 17,
        )
    assert caught.value.field == "accession_number"
    assert caught.value.message == "accession_number is longer than 16 characters"
    assert Image.objects.count() == 0 and stored_files(media_root) == []


# --- damaged files: messages that say what is wrong ---------------------------------------


def test_a_truncated_jpeg2000_file_is_reported_as_truncated_pixel_data(api, media_root):
    ds = mg_dataset()
    ds.compress(JPEG2000Lossless)
    content = to_bytes(ds)
    message = "the pixel data is truncated or damaged: the file ends inside it"
    assert_refused(upload(api, content[: len(content) - 3000]), 400, message, media_root)


def test_a_damaged_jpeg2000_codestream_is_reported_as_damaged_pixel_data(api, media_root):
    ds = mg_dataset()
    ds.compress(JPEG2000Lossless)
    codestream = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([codestream[: len(codestream) // 2]])
    message = (
        "the compressed pixel data (JPEG 2000 Image Compression (Lossless Only)) is damaged or truncated "
        "and cannot be decoded"
    )
    assert_refused(upload(api, to_bytes(ds)), 400, message, media_root)


def test_a_truncated_uncompressed_file_says_how_much_pixel_data_is_missing_once(api, media_root):
    content = to_bytes(mg_dataset())  # 256 x 200 x 2 bytes = 102,400 bytes of pixel data
    message = "the pixel data is truncated: the file holds 97,400 of the 102,400 bytes its header describes"
    assert_refused(upload(api, content[: len(content) - 5000]), 400, message, media_root)


def test_a_stored_original_damaged_after_ingest_fails_decoding_with_one_clear_message(api):
    from screening.intake.services.media import decode_original

    assert upload(api, to_bytes(mg_dataset())).status_code == 201
    image = Image.objects.get()
    path = Path(image.original.path)
    path.write_bytes(path.read_bytes()[:-5000])
    with pytest.raises(PortalError) as caught:
        decode_original(image)
    assert caught.value.message == (
        "the pixel data is truncated: the file holds 97,400 of the 102,400 bytes its header describes"
    )


def test_a_damaged_file_meta_length_is_refused_without_echoing_the_header(api, media_root):
    content = corrupt_file_meta_length(to_bytes(mg_dataset()), "TransferSyntaxUID", 400)
    assert_refused(upload(api, content), 400, f"TransferSyntaxUID {UID_MESSAGE}", media_root)


def test_sizes_are_given_in_megabytes_of_a_million_bytes(api, media_root, settings):
    settings.PORTAL_MAX_UPLOAD_BYTES = 100_000
    content = to_bytes(mg_dataset(phantom(rows=512, columns=512, bits=16), bits=16))
    assert 500_000 < len(content) < 550_000
    assert_refused(upload(api, content), 413, "the file is 0.5 MB; the limit is 0.1 MB", media_root)


def test_portal_max_upload_mb_counts_millions_of_bytes(tmp_path):
    env = {**os.environ, "PORTAL_MAX_UPLOAD_MB": "3", "PORTAL_VAR_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); from django.conf import settings as s; "
         "print(s.PORTAL_MAX_UPLOAD_BYTES)"],
        cwd=ROOT, env={**env, "DJANGO_SETTINGS_MODULE": "portal.settings"}, capture_output=True, text=True,
    )  # fmt: skip
    assert result.stdout.strip() == "3000000", result.stderr


# --- bounded memory -----------------------------------------------------------------------


def test_an_image_over_the_pixel_limit_is_refused_from_its_header_before_decoding(
    api, media_root, settings, monkeypatch
):
    def must_not_decode(*args, **kwargs):
        raise AssertionError("the pixels were decoded")

    monkeypatch.setattr(renditions, "decode_original", must_not_decode)
    settings.PORTAL_MAX_IMAGE_PIXELS = 10_000
    response = upload(api, png_bytes(np.zeros((200, 100), np.uint8)), "bomb.png", patient_id="P-1")
    assert_refused(response, 400, "200x100 pixels is over the limit of 10,000 pixels", media_root)


def test_a_dicom_over_the_pixel_limit_is_refused_before_its_pixel_data_is_decoded(
    api, media_root, settings, monkeypatch
):
    def must_not_decode(*args, **kwargs):
        raise AssertionError("the pixels were decoded")

    monkeypatch.setattr(renditions, "decode_original", must_not_decode)
    settings.PORTAL_MAX_IMAGE_PIXELS = 10_000
    response = upload(api, to_bytes(mg_dataset()))
    assert_refused(response, 400, "256x200 pixels is over the limit of 10,000 pixels", media_root)


def test_an_image_that_would_take_more_than_16_bits_a_pixel_to_decode_is_refused(api, media_root, settings):
    settings.PORTAL_MAX_IMAGE_PIXELS = 1_000_000
    rgba = np.zeros((600, 1000, 4), np.uint8)
    response = upload(api, png_bytes(rgba), "rgba.png", patient_id="P-1")
    message = (
        "a 600x1000 RGBA image takes 2.4 MB to decode, over the limit of 2.0 MB; send it as 8- or 16-bit grayscale"
    )
    assert_refused(response, 400, message, media_root)


def test_a_dicom_with_32_bits_allocated_over_the_decode_limit_is_refused(api, media_root, settings):
    settings.PORTAL_MAX_IMAGE_PIXELS = 250_000
    ds = mg_dataset(phantom(rows=500, columns=500, bits=16), bits=16)
    ds.BitsAllocated = 32
    ds.PixelData = np.zeros((500, 500), np.uint32).tobytes()
    message = (
        "a 500x500 DICOM with 32 bits allocated takes 1.0 MB to decode, over the limit of 0.5 MB; expected 8 or 16"
    )
    assert_refused(upload(api, to_bytes(ds)), 400, message, media_root)


def test_the_rendition_of_a_large_image_is_shrunk_and_the_row_keeps_the_original_size(api, settings):
    settings.PORTAL_RENDITION_MAX_SIDE = 512
    response = upload(api, to_bytes(mg_dataset(phantom(rows=2100, columns=1500, bits=12))))
    assert response.status_code == 201, response.json()
    renditions.render_image(response.json()["id"])  # the render worker's task
    image = Image.objects.get()
    assert (image.rows, image.columns) == (2100, 1500)
    with image.rendition.open("rb") as fh:
        rendition = PILImage.open(io.BytesIO(fh.read()))
        assert rendition.mode == "L" and rendition.size == (366, 512)


def test_ingesting_a_16bit_dicom_allocates_at_most_three_times_its_8bit_picture(media_root):
    rows, columns = 5000, 3750
    pixels = np.random.default_rng(0).integers(0, 65535, (rows, columns), dtype=np.uint16)
    content = to_bytes(mg_dataset(pixels, bits=16))
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = ingest_file(file=io.BytesIO(content), filename="big.dcm")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.created and (result.image.rows, result.image.columns) == (rows, columns)
    # The stored pixels themselves are 2x the 8-bit picture; a float copy would add 4x or 8x.
    assert peak <= 3 * rows * columns


def test_renders_beyond_the_decode_limit_wait_and_leave_the_image_pending(api, settings, monkeypatch):
    settings.PORTAL_MAX_CONCURRENT_DECODES = 1
    monkeypatch.setattr(renditions, "_DECODE_WAIT_SECONDS", 0.05)
    image_id = upload(api, to_bytes(mg_dataset())).json()["id"]
    with renditions.decode_slot(), pytest.raises(PortalError) as caught:  # another render is decoding
        renditions.render_image(image_id)
    assert caught.value.code == "busy" and caught.value.status == 503
    assert renditions.rendition_state(Image.objects.get(pk=image_id)) == "pending"  # not failed: tried again
    assert renditions.render_image(image_id) == "ready"  # the slot is free again
