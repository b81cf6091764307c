"""API contracts: uploads, idempotency keys, throttles, filters, pseudonyms and query counts."""

from __future__ import annotations

import io

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from PIL import Image as PILImage
from rest_framework.test import APIClient

from screening.ai.services.predicting import run_prediction
from screening.intake.services.ingest import ingest_file
from screening.models import Image, Prediction, Review
from screening.reading.services.reviews import review_submit
from tests.dicom_factory import mg_dataset, to_bytes

pytestmark = pytest.mark.django_db


def png(seed=0) -> io.BytesIO:
    buffer = io.BytesIO()
    PILImage.fromarray(np.random.default_rng(seed).integers(0, 255, (64, 48), dtype=np.uint8)).save(buffer, "PNG")
    buffer.seek(0)
    buffer.name = "scan.png"
    return buffer


def test_png_upload_contract(api):
    response = api.post(
        "/api/v1/images/", {"file": png(), "patient_id": "P-1", "laterality": "R", "view": "MLO"}, format="multipart"
    )
    assert response.status_code == 201
    body = response.json()
    assert {"id", "study", "laterality", "view", "status", "rendition_url", "full_url", "prediction"} <= set(body)
    assert (body["laterality"], body["view"], body["file_format"]) == ("R", "MLO", "png")


def test_an_idempotency_key_replays_the_first_answer(api):
    first = api.post(
        "/api/v1/images/", {"file": png(1), "patient_id": "P"}, format="multipart", HTTP_IDEMPOTENCY_KEY="k-1"
    )
    again = api.post(
        "/api/v1/images/", {"file": png(2), "patient_id": "P"}, format="multipart", HTTP_IDEMPOTENCY_KEY="k-1"
    )
    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true" and again.json()["id"] == first.json()["id"]
    assert Image.objects.count() == 1  # the second file was never ingested


def test_an_idempotency_key_reused_on_another_endpoint_is_a_conflict(rad_api):
    image = ingest_file(file=io.BytesIO(to_bytes(mg_dataset())), filename="x.dcm").image
    rad_api.post("/api/v1/images/", {"file": png(1), "patient_id": "P"}, format="multipart", HTTP_IDEMPOTENCY_KEY="k-2")
    response = rad_api.post(
        f"/api/v1/studies/{image.study_id}/reviews/",
        {"decision": "normal", "birads": 1},
        format="json",
        HTTP_IDEMPOTENCY_KEY="k-2",
    )
    assert response.status_code == 409 and response.json()["error"]["code"] == "conflict"
    assert not Review.objects.exists()


def test_a_retried_review_with_its_key_is_recorded_once(rad_api):
    image = ingest_file(file=io.BytesIO(to_bytes(mg_dataset())), filename="x.dcm").image
    for _ in range(2):
        response = rad_api.post(
            f"/api/v1/studies/{image.study_id}/reviews/",
            {"decision": "normal", "birads": 1},
            format="json",
            HTTP_IDEMPOTENCY_KEY="review-1",
        )
        assert response.status_code == 201
    assert Review.objects.count() == 1


def test_a_token_is_issued_for_good_credentials(radiologist):
    response = APIClient().post("/api/v1/auth/token/", {"username": "rad", "password": "a-long-test-password"})
    assert response.status_code == 200 and len(response.json()["token"]) == 40


def test_filters_by_laterality_status_and_flag(rad_api):
    for seed, side in enumerate("LRL"):
        ingest_file(
            file=io.BytesIO(to_bytes(mg_dataset(laterality=side, seed=seed, patient_id=f"P{seed}"))), filename="x"
        )
    left = rad_api.get("/api/v1/images/", {"laterality": "L"}).json()
    assert len(left["results"]) == 2 and {r["laterality"] for r in left["results"]} == {"L"}  # a cursor page
    assert rad_api.get("/api/v1/studies/", {"flag": "none"}).json()["count"] == 3
    p1 = Image.objects.get(study__patient__patient_id="P1").study.patient_id
    assert rad_api.get("/api/v1/studies/", {"patient_number": p1}).json()["count"] == 1
    bad = rad_api.get("/api/v1/images/", {"laterality": "X"})
    assert bad.status_code == 400 and "laterality" in bad.json()["error"]["fields"]


def test_api_clients_see_pseudonyms_and_cannot_filter_by_patient_id(api, api_client_user):
    ingest_file(file=io.BytesIO(to_bytes(mg_dataset(patient_id="REAL-ID"))), filename="x", user=api_client_user)
    patients = api.get("/api/v1/patients/").json()["results"]
    assert patients[0]["patient_id"].startswith("anon-") and patients[0]["name"] == ""
    assert api.get("/api/v1/studies/", {"patient": "REAL-ID"}).status_code == 400
    from django.contrib.auth.models import Permission

    api_client_user.user_permissions.add(Permission.objects.get(codename="view_patient"))
    api_client_user.user_permissions.add(Permission.objects.get(codename="view_all_studies"))
    granted = APIClient()
    granted.force_authenticate(type(api_client_user).objects.get(pk=api_client_user.pk))
    assert granted.get("/api/v1/patients/").json()["results"][0]["patient_id"] == "REAL-ID"


def _seed(n: int, champion, radiologist):
    for i in range(n):
        image = ingest_file(file=io.BytesIO(to_bytes(mg_dataset(seed=i, patient_id=f"Q{i}"))), filename="x").image
        Prediction.objects.filter(image=image).update(status="done", probability=0.1 * (i % 10))
        review_submit(study=image.study, radiologist=radiologist, decision="normal", birads=1)


@pytest.mark.parametrize(
    "url",
    ["/api/v1/images/", "/api/v1/studies/", "/api/v1/predictions/", "/api/v1/worklist/?status=", "/api/v1/patients/"],
)
def test_list_endpoints_make_a_constant_number_of_queries(rad_api, champion, radiologist, url):
    _seed(2, champion, radiologist)
    with CaptureQueriesContext(connection) as few:
        assert rad_api.get(url).status_code == 200
    _seed(6, champion, radiologist)
    with CaptureQueriesContext(connection) as many:
        assert rad_api.get(url).status_code == 200
    assert len(many) == len(few), [q["sql"][:120] for q in many.captured_queries]


def test_study_detail_queries_do_not_grow_with_images_and_reviews(rad_api, champion, radiologist):
    ds = mg_dataset(seed=0)
    image = ingest_file(file=io.BytesIO(to_bytes(ds)), filename="x").image
    run_prediction(Prediction.objects.get(image=image).pk)
    review_submit(study=image.study, radiologist=radiologist, decision="normal", birads=1)
    with CaptureQueriesContext(connection) as few:
        rad_api.get(f"/api/v1/studies/{image.study_id}/")
    for seed in range(1, 4):
        ingest_file(file=io.BytesIO(to_bytes(mg_dataset(seed=seed, study_uid=ds.StudyInstanceUID))), filename="x")
        review_submit(study=image.study, radiologist=radiologist, decision="abnormal", birads=4)
    with CaptureQueriesContext(connection) as many:
        rad_api.get(f"/api/v1/studies/{image.study_id}/")
    assert len(many) == len(few)
