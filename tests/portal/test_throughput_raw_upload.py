"""A DICOM as the whole request body (`Content-Type: application/dicom`, as Orthanc's POST /instances):
the same ingest as a multipart upload, without multipart framing to parse."""

from __future__ import annotations

import pytest

from screening.models import Image
from tests.conftest import stored_files
from tests.dicom_factory import mg_dataset, to_bytes

pytestmark = pytest.mark.django_db
URL = "/api/v1/images/"


def post(client, content: bytes):
    return client.generic("POST", URL, content, content_type="application/dicom")


def test_a_dicom_body_is_ingested_once_and_hashed_as_it_streamed(api, media_root):
    content = to_bytes(mg_dataset())
    first, again = post(api, content), post(api, content)
    assert first.status_code == 201 and again.status_code == 200, first.json()
    assert first.json()["id"] == again.json()["id"] and first.json()["rendition_status"] == "pending"
    import hashlib

    assert Image.objects.get().sha256 == hashlib.sha256(content).hexdigest()
    assert [name.split("/")[0] for name in stored_files(media_root)] == ["originals"]


def test_a_dicom_body_over_the_limit_is_refused_with_nothing_stored(api, media_root, settings):
    settings.PORTAL_MAX_UPLOAD_BYTES = 50_000
    response = post(api, to_bytes(mg_dataset()))
    assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"
    assert response.json()["error"]["message"] == "the file is 0.1 MB; the limit is 0.1 MB"
    assert stored_files(media_root) == [] and not Image.objects.exists()


def test_a_body_that_is_no_dicom_is_refused_with_the_reason(api, media_root):
    response = post(api, b"hello, this is not a mammogram")
    assert response.status_code == 415 and "not a DICOM file" in response.json()["error"]["message"]
    assert stored_files(media_root) == []


def test_a_stored_dicom_body_leaves_no_temporary_file_and_no_error_behind(
    api, media_root, settings, tmp_path, monkeypatch
):
    """The body is streamed to a temporary file that storage then moves into place; the upload is closed by the
    view, not left to the garbage collector (whose unlink of the moved file raised FileNotFoundError in CI)."""
    import gc
    import sys

    spool = tmp_path / "spool"
    spool.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(spool)
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    for content in (to_bytes(mg_dataset()), b"hello, this is not a mammogram"):
        response = post(api, content)
        assert response.status_code in (201, 415)
        del response
    gc.collect()
    assert [u.exc_value for u in unraisable] == [] and list(spool.iterdir()) == []
    assert Image.objects.count() == 1
