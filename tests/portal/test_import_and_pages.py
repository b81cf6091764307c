"""import_images, the upload page, media permission checks and login on every page."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from django.core.management import call_command
from django.urls import reverse
from PIL import Image as PILImage

from screening.intake.services import renditions
from screening.models import Image
from tests.conftest import stored_files
from tests.dicom_factory import mg_dataset, to_bytes

pytestmark = pytest.mark.django_db


def test_import_images_walks_a_folder_and_reports_each_rejection(tmp_path, media_root):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "one.dcm").write_bytes(to_bytes(mg_dataset(seed=1)))
    (tmp_path / "a" / "b" / "two.dcm").write_bytes(to_bytes(mg_dataset(seed=2)))
    (tmp_path / "a" / "b" / "copy.dcm").write_bytes((tmp_path / "a" / "one.dcm").read_bytes())
    (tmp_path / "ct.dcm").write_bytes(to_bytes(mg_dataset(modality="CT", sop_class="1.2.840.10008.5.1.4.1.1.2")))
    (tmp_path / "notes.txt").write_text("not an image")
    out = io.StringIO()
    call_command("import_images", str(tmp_path), "--no-progress", stdout=out)
    report = out.getvalue()
    assert "5 files: 2 accepted, 1 already present, 2 rejected" in report
    assert "rejected ct.dcm: CT is not a mammography modality (expected MG)" in report
    assert "rejected notes.txt: not a DICOM file" in report
    assert Image.objects.count() == 2
    assert len(stored_files(media_root)) == 2  # the originals; renditions come from the render worker


def test_import_images_takes_patient_laterality_and_view_from_a_labels_csv(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("mdbx01", "mdbx02"):
        PILImage.fromarray(np.random.default_rng(len(name)).integers(0, 255, (64, 64), dtype=np.uint8)).save(
            images / f"{name}.png"
        )
    PILImage.fromarray(np.full((64, 64), 7, np.uint8)).save(images / "mdbx02.png")
    labels = tmp_path / "images.csv"
    with labels.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image_id", "patient_id", "laterality", "view", "tissue", "label"])
        writer.writerow(["mdbx01", "w-1", "R", "MLO", "F", "normal"])
        writer.writerow(["mdbx02", "w-1", "L", "MLO", "F", "abnormal"])
    call_command("import_images", str(images), "--labels", str(labels), "--no-progress", stdout=io.StringIO())
    assert sorted(Image.objects.values_list("laterality", "view", "study__patient__patient_id")) == [
        ("L", "MLO", "w-1"),
        ("R", "MLO", "w-1"),
    ]


@pytest.mark.parametrize("name", ["worklist", "upload"])
def test_pages_send_anonymous_users_to_the_login_page(client, name):
    response = client.get(reverse(name))
    assert response.status_code == 302 and response.url.startswith(reverse("login"))


def test_a_radiologist_sees_the_worklist_and_the_upload_page(client, radiologist, api):
    api.post("/api/v1/images/", {"file": io.BytesIO(to_bytes(mg_dataset(patient_id="P-77")))}, format="multipart")
    client.force_login(radiologist)
    page = client.get(reverse("worklist"))
    assert page.status_code == 200 and b"P-77" in page.content
    upload = client.get(reverse("upload"))
    assert upload.status_code == 200 and b'id="dropzone"' in upload.content


def test_a_user_without_a_role_is_refused_the_pages(client, outsider):
    client.force_login(outsider)
    assert client.get(reverse("worklist")).status_code == 403
    assert client.get(reverse("upload")).status_code == 403


def test_renditions_need_login_and_a_role(client, api, outsider, radiologist):
    body = api.post("/api/v1/images/", {"file": io.BytesIO(to_bytes(mg_dataset()))}, format="multipart").json()
    url = body["rendition_url"]
    renditions.render_image(body["id"])  # what the render worker does after ingest
    assert client.get(url).status_code == 401
    client.force_login(outsider)
    assert client.get(url).status_code == 403
    client.force_login(radiologist)
    response = client.get(url)
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert b"".join(response.streaming_content).startswith(b"\x89PNG")


def test_media_is_not_served_from_a_public_url(client, api, radiologist, media_root):
    api.post("/api/v1/images/", {"file": io.BytesIO(to_bytes(mg_dataset()))}, format="multipart")
    client.force_login(radiologist)
    for name in stored_files(media_root):
        assert client.get("/media/" + name).status_code == 404


def test_the_browser_upload_goes_through_the_api_with_the_session(client, radiologist):
    client.force_login(radiologist)
    response = client.post("/api/v1/images/", {"file": io.BytesIO(to_bytes(mg_dataset()))})
    assert response.status_code == 201
    assert Image.objects.count() == 1


def test_the_api_schema_and_docs_need_a_login(client, radiologist):
    assert client.get("/api/schema/").status_code in (401, 403)
    client.force_login(radiologist)
    assert client.get("/api/schema/").status_code == 200
    docs = client.get("/api/docs/")
    assert docs.status_code == 200 and b"cdn" not in docs.content.lower()


def test_healthz_answers_without_data(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
