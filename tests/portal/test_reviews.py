"""Decisions: versions never overwrite, findings, audit, next case, worklist order and filters."""

from __future__ import annotations

import io

import pytest
from django.urls import reverse

from screening.errors import PortalError
from screening.intake.services import renditions
from screening.intake.services.ingest import ingest_file
from screening.models import AuditEvent, Review, Study
from screening.reading.services.reviews import review_submit
from tests.dicom_factory import mg_dataset, to_bytes

pytestmark = pytest.mark.django_db


def make_study(patient: str, score: float | None, flag: bool | None = None, status: str = "predicted", **kwargs):
    image = ingest_file(file=io.BytesIO(to_bytes(mg_dataset(patient_id=patient, **kwargs))), filename="x.dcm").image
    Study.objects.filter(pk=image.study_id).update(exam_score=score, exam_flag=flag, status=status)
    return Study.objects.get(pk=image.study_id), image


def review_url(study):
    return f"/api/v1/studies/{study.pk}/reviews/"


def test_a_decision_is_saved_with_findings_and_the_next_case_is_offered(rad_api, radiologist):
    study, image = make_study("A", 0.9, True)
    other, _ = make_study("B", 0.4, False, seed=1)
    body = {
        "decision": "abnormal",
        "birads": 4,
        "density": "C",
        "note": "spiculated mass",
        "findings": [{"image": image.pk, "type": "mass", "x": 50, "y": 60, "width": 30, "height": 20}],
    }
    response = rad_api.post(review_url(study), body, format="json")
    assert response.status_code == 201, response.json()
    data = response.json()
    assert data["review"]["version"] == 1 and data["review"]["agrees_with_ai"] is True
    assert data["review"]["findings"][0]["laterality"] == image.laterality
    assert data["next_url"] == reverse("study-viewer", args=[other.pk])
    assert Study.objects.get(pk=study.pk).status == "reported"
    event = AuditEvent.objects.get(action="review_submit")
    assert event.username == "rad" and event.detail["birads"] == 4


def test_a_correction_creates_a_new_version_and_keeps_the_old_one(rad_api):
    study, _ = make_study("A", 0.2, False)
    rad_api.post(review_url(study), {"decision": "normal", "birads": 1}, format="json")
    rad_api.post(review_url(study), {"decision": "abnormal", "birads": 0}, format="json")
    history = rad_api.get(review_url(study)).json()
    assert [(r["version"], r["decision"]) for r in history] == [(2, "abnormal"), (1, "normal")]
    assert Review.objects.filter(study=study).count() == 2
    assert AuditEvent.objects.filter(action="review_correct").count() == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"decision": "maybe", "birads": 1}, "decision"),
        ({"decision": "normal", "birads": 7}, "birads"),
        ({"decision": "normal", "birads": 1, "density": "E"}, "density"),
    ],
)
def test_an_invalid_decision_is_refused_with_the_field_named(rad_api, body, field):
    study, _ = make_study("A", 0.2, False)
    response = rad_api.post(review_url(study), body, format="json")
    assert response.status_code == 400 and field in response.json()["error"]["fields"]
    assert not Review.objects.exists()


@pytest.mark.parametrize(
    ("decision", "birads", "message"),
    [
        ("normal", 5, "BI-RADS 5 goes with an abnormal decision; normal allows BI-RADS 1 or 2"),
        ("normal", 0, "BI-RADS 0 goes with an abnormal decision; normal allows BI-RADS 1 or 2"),
        ("normal", 3, "BI-RADS 3 goes with an abnormal decision; normal allows BI-RADS 1 or 2"),
        ("abnormal", 1, "BI-RADS 1 goes with a normal decision; abnormal allows BI-RADS 0, 3, 4, 5 or 6"),
        ("abnormal", 2, "BI-RADS 2 goes with a normal decision; abnormal allows BI-RADS 0, 3, 4, 5 or 6"),
    ],
)
def test_an_incoherent_decision_is_refused_with_the_reason(rad_api, decision, birads, message):
    study, _ = make_study("A", 0.2, False)
    response = rad_api.post(review_url(study), {"decision": decision, "birads": birads}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"] == message and error["fields"] == {"birads": [message]}
    assert not Review.objects.exists() and not AuditEvent.objects.filter(action="review_submit").exists()
    assert Study.objects.get(pk=study.pk).status == "predicted"


@pytest.mark.parametrize(
    ("decision", "birads"),
    [("normal", 1), ("normal", 2), ("abnormal", 0), ("abnormal", 3), ("abnormal", 5), ("abnormal", 6)],
)
def test_a_coherent_decision_is_saved(rad_api, decision, birads):
    study, _ = make_study("A", 0.2, False)
    response = rad_api.post(review_url(study), {"decision": decision, "birads": birads}, format="json")
    assert response.status_code == 201, response.json()
    assert Review.objects.get(study=study).birads == birads


def test_a_correction_must_be_coherent_too(rad_api, radiologist):
    study, _ = make_study("A", 0.2, False)
    review_submit(study=study, radiologist=radiologist, decision="normal", birads=1)
    with pytest.raises(PortalError) as refused:
        review_submit(study=study, radiologist=radiologist, decision="normal", birads=4)
    assert refused.value.field == "birads"
    assert list(Review.objects.filter(study=study).values_list("version", "birads")) == [(1, 1)]


def test_a_finding_outside_the_image_or_study_is_refused(rad_api):
    study, image = make_study("A", 0.2, False)
    _, foreign = make_study("B", 0.2, False, seed=1)
    for finding in (
        {"image": image.pk, "type": "mass", "x": 190, "y": 10, "width": 50, "height": 5},
        {"image": foreign.pk, "type": "mass", "x": 1, "y": 1},
    ):
        response = rad_api.post(
            review_url(study), {"decision": "abnormal", "birads": 4, "findings": [finding]}, format="json"
        )
        assert response.status_code == 400
    assert not Review.objects.exists()


def test_an_api_client_cannot_decide(api):
    study, _ = make_study("A", 0.2, False)
    assert api.post(review_url(study), {"decision": "normal", "birads": 1}, format="json").status_code == 403


def test_the_worklist_shows_unread_first_by_score(client, radiologist):
    low, _ = make_study("LOW", 0.1, False)
    high, _ = make_study("HIGH", 0.95, True, seed=1)
    done, _ = make_study("DONE", 0.99, True, status="reported", seed=2)
    middle, _ = make_study("MID", 0.5, True, seed=3)
    client.force_login(radiologist)
    page = client.get(reverse("worklist"))
    ids = [s.pk for s in page.context["page"]]
    assert ids == [high.pk, middle.pk, low.pk]  # reported studies are hidden from the unread view
    everything = client.get(reverse("worklist"), {"status": "", "ordering": "score"})
    assert [s.pk for s in everything.context["page"]] == [high.pk, middle.pk, low.pk, done.pk]
    flagged = client.get(reverse("worklist"), {"status": "unread", "flag": "below"})
    assert [s.pk for s in flagged.context["page"]] == [low.pk]


def test_ordering_by_uncertainty_puts_cases_nearest_the_threshold_first(client, radiologist, champion):
    far, _ = make_study("FAR", 0.98, True)
    near, _ = make_study("NEAR", 0.52, True, seed=1)
    Study.objects.update(exam_model=champion)  # threshold 0.5
    client.force_login(radiologist)
    page = client.get(reverse("worklist"), {"status": "unread", "ordering": "uncertainty"})
    assert [s.pk for s in page.context["page"]] == [near.pk, far.pk]


def test_opening_a_case_is_audited_and_admins_can_read_the_trail(client, radiologist, admin_user):
    study, _ = make_study("A", 0.3, False)
    client.force_login(radiologist)
    response = client.get(reverse("study-viewer", args=[study.pk]))
    assert response.status_code == 200
    assert AuditEvent.objects.filter(action="open_case", username="rad", study=study).exists()
    assert Study.objects.get(pk=study.pk).status == "predicted"  # looked at, not read (test_corrections.py)
    assert client.get(reverse("study-audit", args=[study.pk])).status_code == 403
    client.force_login(admin_user)
    trail = client.get(reverse("study-audit", args=[study.pk]))
    assert trail.status_code == 200 and b"open_case" in trail.content


def test_a_radiologist_cannot_reach_the_admin(client, radiologist):
    client.force_login(radiologist)
    response = client.get("/admin/")
    assert response.status_code == 302 and "/admin/login/" in response.url


def test_the_full_resolution_image_is_made_once(rad_api):
    _, image = make_study("A", 0.3, False)
    renditions.render_image(image.pk)  # what the render worker does after ingest
    first = rad_api.get(f"/api/v1/images/{image.pk}/full/")
    second = rad_api.get(f"/api/v1/images/{image.pk}/full/")
    assert first.status_code == second.status_code == 200
    from PIL import Image as PILImage

    assert PILImage.open(io.BytesIO(b"".join(first.streaming_content))).size == (200, 256)
