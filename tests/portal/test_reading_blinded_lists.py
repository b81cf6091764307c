"""Blinded reading: no list endpoint tells a case reader the AI result while the policy hides it."""

from __future__ import annotations

import pytest

from screening.models import Image, ModelVersion, Prediction
from screening.reading.services.reading import set_policy
from tests.conftest import _token_client
from tests.portal.reading_fixtures import make_study

pytestmark = pytest.mark.django_db

AI_FIELDS = ("exam_score", "exam_flag", "score_left", "score_right", "exam_model")


def _predicted(study):
    image = study.images.get()
    version = ModelVersion.objects.get(status="champion")
    Prediction.objects.filter(image=image).delete()
    Prediction.objects.create(image=image, model_version=version, status="done", probability=0.91, logit=2.0)
    Image.objects.filter(pk=image.pk).update(status="predicted")
    return image


def test_lists_carry_no_ai_result_for_a_blinded_reader(admin_user, radiologist):
    study = make_study("BL1", 0.91, True)
    _predicted(study)
    set_policy(user=admin_user, mode="double", blind_ai=True)
    reader = _token_client(radiologist)
    for url in ("/api/v1/studies/", "/api/v1/worklist/?status="):
        [row] = reader.get(url).json()["results"]
        assert all(row[field] is None for field in AI_FIELDS), (url, row)
    [image] = reader.get("/api/v1/images/").json()["results"]
    assert image["prediction"] is None
    assert reader.get("/api/v1/predictions/").json()["results"] == []
    # An admin (who does not read) still sees everything.
    [row] = _token_client(admin_user).get("/api/v1/studies/").json()["results"]
    assert row["exam_score"] == pytest.approx(0.91)


def test_lists_show_the_ai_result_when_the_policy_does_not_blind(admin_user, radiologist):
    study = make_study("BL2", 0.91, True)
    _predicted(study)
    set_policy(user=admin_user, mode="double", blind_ai=False)
    reader = _token_client(radiologist)
    [row] = reader.get("/api/v1/studies/").json()["results"]
    assert row["exam_score"] == pytest.approx(0.91)
    assert len(reader.get("/api/v1/predictions/").json()["results"]) == 1


def test_the_worklist_page_hides_the_score_from_a_blinded_reader(admin_user, radiologist, client):
    study = make_study("BL3", 0.91, True)
    _predicted(study)
    set_policy(user=admin_user, mode="double", blind_ai=True)
    client.force_login(radiologist)
    page = client.get("/?status=").content.decode()
    assert f"#{study.pk}" in page and "hidden until read" in page and "0.91" not in page


def test_the_ai_result_sr_waits_for_the_final_decision_when_readers_are_blinded(
    admin_user, radiologist, settings, django_capture_on_commit_callbacks
):
    """The PACS and DICOMweb show the SRs the portal sent: a blinded AI result is sent only once read."""
    from screening.exchange.services import export
    from screening.models import DicomExport
    from screening.reading.services.reviews import review_submit

    settings.PORTAL_DICOM_DESTINATIONS = [("PACS", "127.0.0.1", 1)]
    study = make_study("BL4", 0.91, True)
    _predicted(study)
    study.exam_model = ModelVersion.objects.get(status="champion")
    study.save(update_fields=["exam_model"])
    set_policy(user=admin_user, mode="single", blind_ai=True)
    assert export.queue_ai_result(study) == []
    assert not DicomExport.objects.filter(kind="ai").exists()
    with django_capture_on_commit_callbacks(execute=False):
        review_submit(study=study, radiologist=radiologist, decision="abnormal", birads=4)
    assert DicomExport.objects.filter(study=study, kind="ai").count() == 1
    assert DicomExport.objects.filter(study=study, kind="decision").count() == 1
