"""REST upload: DICOM and image files, idempotency, errors, permissions, no leftovers."""

from __future__ import annotations

import numpy as np
import pytest

from screening.models import AuditEvent, Image, Patient, Study
from tests.conftest import stored_files
from tests.dicom_factory import mg_dataset, to_bytes
from tests.uploads import URL, png_bytes, upload

pytestmark = pytest.mark.django_db


def assert_nothing_stored(media_root):
    assert Image.objects.count() == 0
    assert Study.objects.count() == 0
    assert Patient.objects.count() == 0
    assert stored_files(media_root) == []


def test_it_ingests_a_dicom_with_its_metadata(api, media_root):
    ds = mg_dataset(laterality="R", view="MLO", patient_id="P-42")
    response = upload(api, to_bytes(ds))
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["laterality"] == "R" and body["view"] == "MLO"
    assert (body["rows"], body["columns"], body["bits_stored"]) == (256, 200, 12)
    image = Image.objects.get(pk=body["id"])
    assert image.sop_uid == ds.SOPInstanceUID
    assert image.study.study_uid == ds.StudyInstanceUID
    assert image.study.patient.patient_id == "P-42"
    assert image.study.study_date.isoformat() == "2026-03-01"
    assert image.manufacturer == "Synthetic" and image.presentation_intent == "FOR PRESENTATION"
    assert len(stored_files(media_root)) == 1  # the original; the render worker adds the rendition
    assert AuditEvent.objects.filter(action="ingest", object_id=str(image.pk)).exists()


def test_the_same_file_twice_returns_the_existing_image(api):
    content = to_bytes(mg_dataset())
    first = upload(api, content)
    second = upload(api, content)
    assert first.status_code == 201 and second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    assert Image.objects.count() == 1


def test_the_same_sop_instance_uid_in_other_bytes_returns_the_existing_image(api, media_root):
    ds = mg_dataset()
    first = upload(api, to_bytes(ds))
    ds.Manufacturer = "Re-exported"
    second = upload(api, to_bytes(ds))
    assert second.status_code == 200 and second.json()["id"] == first.json()["id"]
    assert Image.objects.count() == 1
    assert len(stored_files(media_root)) == 1


def test_two_images_of_one_study_share_the_study_and_patient(api):
    first = mg_dataset(laterality="L", view="CC")
    second = mg_dataset(laterality="L", view="MLO", study_uid=first.StudyInstanceUID, seed=1)
    upload(api, to_bytes(first))
    upload(api, to_bytes(second))
    assert Study.objects.count() == 1 and Patient.objects.count() == 1
    assert Study.objects.get().images.count() == 2


def test_it_ingests_a_png_with_the_uploaders_metadata(api):
    array = (np.linspace(0, 255, 300 * 200).reshape(300, 200)).astype(np.uint8)
    response = upload(api, png_bytes(array), "scan.png", patient_id="P-9", laterality="L", view="CC")
    assert response.status_code == 201, response.json()
    image = Image.objects.get(pk=response.json()["id"])
    assert (image.file_format, image.laterality, image.view) == ("png", "L", "CC")
    assert image.study.uid_generated and image.study.patient.patient_id == "P-9"


def test_images_of_one_woman_uploaded_together_share_a_study(api):
    for seed in range(2):
        array = np.random.default_rng(seed).integers(0, 255, (64, 48), dtype=np.uint8)
        assert upload(api, png_bytes(array), f"{seed}.png", patient_id="P-9").status_code == 201
    assert Study.objects.count() == 1


def test_a_png_without_patient_id_is_rejected_with_the_reason(api, media_root):
    response = upload(api, png_bytes(np.zeros((32, 32), np.uint8)), "scan.png")
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("patient_id is required")
    assert_nothing_stored(media_root)


@pytest.mark.parametrize(
    ("content", "name", "status", "fragment"),
    [
        (b"hello, this is not an image", "notes.txt", 415, "not a DICOM file and not a supported image"),
        (b"", "empty.dcm", 400, "empty"),
    ],
)
def test_it_rejects_files_that_are_not_mammograms(api, media_root, content, name, status, fragment):
    response = upload(api, content, name)
    assert response.status_code == status
    assert fragment in response.json()["error"]["message"]
    assert_nothing_stored(media_root)


def test_it_rejects_a_ct_dicom(api, media_root):
    response = upload(api, to_bytes(mg_dataset(modality="CT", sop_class="1.2.840.10008.5.1.4.1.1.2")))
    assert response.status_code == 415
    assert response.json()["error"]["message"] == "CT is not a mammography modality (expected MG)"
    assert_nothing_stored(media_root)


def test_it_rejects_a_dicom_without_pixel_data(api, media_root):
    ds = mg_dataset()
    del ds.PixelData
    response = upload(api, to_bytes(ds))
    assert response.status_code == 400 and response.json()["error"]["code"] == "no_pixel_data"
    assert_nothing_stored(media_root)


def test_it_rejects_truncated_pixel_data(api, media_root):
    content = to_bytes(mg_dataset())
    response = upload(api, content[: len(content) - 5000])
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "the pixel data is truncated: the file holds 97,400 of the 102,400 bytes its header describes"
    )
    assert_nothing_stored(media_root)


def test_it_rejects_a_multi_frame_dicom(api, media_root):
    ds = mg_dataset()
    ds.NumberOfFrames = 2
    ds.PixelData = ds.PixelData * 2
    response = upload(api, to_bytes(ds))
    assert response.status_code == 400 and "2 frames" in response.json()["error"]["message"]
    assert_nothing_stored(media_root)


def test_it_rejects_a_colour_dicom(api, media_root):
    ds = mg_dataset(pixels=np.zeros((16, 16), np.uint8), bits=8)
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.PixelData = bytes(16 * 16 * 3)
    response = upload(api, to_bytes(ds))
    assert response.status_code == 400 and response.json()["error"]["code"] == "colour_image"
    assert_nothing_stored(media_root)


def test_it_rejects_a_colour_png(api, media_root):
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[..., 0] = 200
    response = upload(api, png_bytes(rgb), "colour.png", patient_id="P-1")
    assert response.status_code == 400 and "colour" in response.json()["error"]["message"]
    assert_nothing_stored(media_root)


def test_it_rejects_a_file_over_the_size_limit(api, media_root, settings):
    settings.PORTAL_MAX_UPLOAD_BYTES = 50_000
    response = upload(api, to_bytes(mg_dataset()))
    assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"
    assert response.json()["error"]["message"] == "the file is 0.1 MB; the limit is 0.1 MB"
    assert_nothing_stored(media_root)


def test_it_rejects_a_decompression_bomb(api, media_root, settings):
    settings.PORTAL_MAX_IMAGE_PIXELS = 10_000
    response = upload(api, png_bytes(np.zeros((200, 200), np.uint8)), "bomb.png", patient_id="P-1")
    assert response.status_code == 400 and "over the limit" in response.json()["error"]["message"]
    assert_nothing_stored(media_root)


def test_it_rejects_a_bad_laterality_with_the_field_named(api, media_root):
    response = upload(api, png_bytes(np.zeros((32, 32), np.uint8)), "x.png", patient_id="P", laterality="X")
    assert response.status_code == 400
    assert "laterality" in response.json()["error"]["fields"]
    assert_nothing_stored(media_root)


def test_a_request_without_a_file_names_the_missing_field(api):
    response = api.post(URL, {"patient_id": "P"}, format="multipart")
    assert response.status_code == 400 and "file" in response.json()["error"]["fields"]


def test_a_database_failure_leaves_no_orphan_file(api, media_root, monkeypatch):
    from screening.intake.services import ingest

    def explode(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(ingest, "_write_rows", explode)
    with pytest.raises(RuntimeError):
        upload(api, to_bytes(mg_dataset()))
    assert_nothing_stored(media_root)


def test_anonymous_upload_is_401_with_the_error_shape(anon_api, media_root):
    response = upload(anon_api, to_bytes(mg_dataset()))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert_nothing_stored(media_root)


def test_a_user_without_a_role_cannot_upload(outsider, media_root):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(outsider)
    response = upload(client, to_bytes(mg_dataset()))
    assert response.status_code == 403
    assert_nothing_stored(media_root)
