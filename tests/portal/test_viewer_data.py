"""The case viewer's data: where each image's stored pixels are, and the woman's earlier studies."""

from __future__ import annotations

import io
import json
from unittest import mock

import numpy as np
from django.urls import reverse
from PIL import Image as PILImage

from screening.models import Patient, Review, Study
from tests.dicom_factory import mg_dataset, to_bytes


def upload_dicom(api, *, patient_id: str, study_date: str, seed: int) -> Study:
    ds = mg_dataset(patient_id=patient_id, seed=seed)
    ds.StudyDate = study_date
    body = api.post("/api/v1/images/", {"file": io.BytesIO(to_bytes(ds))}, format="multipart").json()
    return Study.objects.get(pk=body["study"])


def test_the_viewer_data_needs_a_reading_role(client, api, outsider):
    study = upload_dicom(api, patient_id="P-VD1", study_date="20260301", seed=1)
    url = reverse("study-viewer-data", args=[study.pk])
    assert client.get(url).status_code == 302  # to the login page
    client.force_login(outsider)
    assert client.get(url).status_code == 403


def test_pixels_come_from_wado_rs_or_the_picture_and_priors_carry_decision_and_score(client, api, radiologist):
    prior = upload_dicom(api, patient_id="P-VD2", study_date="20240301", seed=2)
    Study.objects.filter(pk=prior.pk).update(exam_score=0.27, exam_flag=False)
    Review.objects.create(study=prior, version=1, radiologist=radiologist, decision="normal", birads=1)
    current = upload_dicom(api, patient_id="P-VD2", study_date="20260301", seed=3)
    upload_dicom(api, patient_id="P-OTHER", study_date="20230301", seed=4)  # another woman: not a prior
    client.force_login(radiologist)
    data = client.get(reverse("study-viewer-data", args=[current.pk])).json()

    image = current.images.get()
    source = data["images"][str(image.pk)]["source"]
    assert source["kind"] == "dicom"
    assert source["url"].startswith(f"/dicomweb/studies/{current.study_uid}/series/")
    assert source["url"].endswith(f"/instances/{image.sop_uid}")
    # The URL serves the stored original (full bit depth) to a viewer asking for application/dicom.
    response = client.get(source["url"], HTTP_ACCEPT="application/dicom")
    assert response.status_code == 200 and response["Content-Type"] == "application/dicom"
    assert data["study"] == {"study_date": "2026-03-01", "age": 66}

    assert [p["id"] for p in data["priors"]] == [prior.pk]
    (entry,) = data["priors"]
    assert entry["study_date"] == "2024-03-01" and entry["exam_score"] == 0.27 and entry["exam_flag"] is False
    assert entry["decision"] == {"decision": "normal", "birads": 1, "version": 1}
    assert [i["id"] for i in entry["images"]] == [prior.images.get().pk]
    # The prior has no prior of its own.
    assert client.get(reverse("study-viewer-data", args=[prior.pk])).json()["priors"] == []


def test_a_picture_upload_is_read_from_its_file(client, api, radiologist):
    buffer = io.BytesIO()
    PILImage.fromarray(np.full((64, 48), 120, dtype=np.uint8)).save(buffer, format="PNG")
    buffer.seek(0)
    body = api.post(
        "/api/v1/images/",
        {"file": buffer, "patient_id": "P-VD3", "laterality": "L", "view": "CC"},
        format="multipart",
    ).json()
    client.force_login(radiologist)
    data = client.get(reverse("study-viewer-data", args=[body["study"]])).json()
    pixels_url = reverse("api-image-pixels", args=[body["id"]])
    assert data["images"][str(body["id"])]["source"] == {"kind": "picture", "url": pixels_url}
    assert data["priors"] == []
    # Its stored values, as DICOM for the viewer's one loader (tests/portal/test_viewer_pixels.py).
    response = client.get(pixels_url, HTTP_ACCEPT="application/dicom")
    assert response.status_code == 200 and response["Content-Type"] == "application/dicom"


def test_the_viewer_page_lists_its_own_pixel_sources_for_the_early_script(client, api, radiologist):
    prior = upload_dicom(api, patient_id="P-VD4", study_date="20240301", seed=5)
    current = upload_dicom(api, patient_id="P-VD4", study_date="20260301", seed=6)
    client.force_login(radiologist)
    page = client.get(reverse("study-viewer", args=[current.pk])).content.decode()

    listed = page.split('<script id="viewer-pixels" type="application/json">')[1].split("</script>")[0]
    data = client.get(reverse("study-viewer-data", args=[current.pk])).json()
    # The same sources the viewer data gives, for this study's images only (a prior loads when it is shown),
    # with what the early script needs to hang them and paint their previews first (firstpaint.js).
    image = current.images.get()
    assert json.loads(listed) == [
        {
            "id": image.pk,
            "laterality": image.laterality,
            "view": image.view,
            "columns": image.columns,
            "rows": image.rows,
            "url": data["images"][str(image.pk)]["source"]["url"],
            "preview": reverse("api-image-preview", args=[image.pk]) if image.rendition else None,
            "stored_range": [image.stored_min, image.stored_max] if image.stored_min is not None else None,
        }
    ]
    assert prior.images.get().sop_uid not in listed
    assert "viewer/dist/early.js" in page


def test_the_viewer_data_name_the_woman_to_a_reader_allowed_to_see_identity(client, api, radiologist):
    study = upload_dicom(api, patient_id="P-VD4", study_date="20260301", seed=5)
    Patient.objects.filter(pk=study.patient_id).update(name="DOE^JANE", birth_date="1960-05-17")
    client.force_login(radiologist)
    data = client.get(reverse("study-viewer-data", args=[study.pk])).json()
    assert data["identity"] == {"name": "DOE JANE", "birth_date": "1960-05-17", "age": 65}
    # The same rule as the API's patient fields: without it, no identity key at all.
    with mock.patch("screening.reading.views.can_see_identity", return_value=False):
        assert "identity" not in client.get(reverse("study-viewer-data", args=[study.pk])).json()
