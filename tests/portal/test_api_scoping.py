"""An API client sees only its own uploads; uploads never join another's study; no oracle, no leak."""

from __future__ import annotations

import io

import numpy as np
import pytest
from django.contrib.auth.models import Group, Permission
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image as PILImage
from rest_framework.test import APIClient

from screening.ai.services.predicting import run_prediction
from screening.intake.services import renditions
from screening.intake.services.ingest import ingest_file
from screening.models import AuditEvent, Image, Patient, Prediction, Study
from screening.reading.services.reviews import review_submit
from tests.conftest import _token_client, _user, stored_files
from tests.dicom_factory import mg_dataset, to_bytes
from tests.uploads import upload

pytestmark = pytest.mark.django_db


def png_bytes(seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(np.random.default_rng(seed).integers(0, 255, (64, 48), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def ingest_as(user, ds) -> Image:
    return ingest_file(file=io.BytesIO(to_bytes(ds)), filename="x.dcm", user=user).image


@pytest.fixture
def other_client_user(db, django_user_model):
    return _user(django_user_model, "other-bridge", "api_client")


@pytest.fixture
def other_api(other_client_user):
    return _token_client(other_client_user)


def ids(client, url: str) -> set[int]:
    response = client.get(url)
    assert response.status_code == 200, response.json()
    return {row["id"] for row in response.json()["results"]}


def give_heatmap(image: Image) -> Prediction:
    prediction = Prediction.objects.get(image=image)
    name = default_storage.save(f"heatmaps/{image.pk}.png", ContentFile(png_bytes()))
    Prediction.objects.filter(pk=prediction.pk).update(heatmap=name)
    return prediction


def test_ingest_records_who_sent_the_image(api, api_client_user, radiologist):
    response = upload(api, to_bytes(mg_dataset(patient_id="OWN-1")))
    assert Image.objects.get(pk=response.json()["id"]).uploaded_by == api_client_user
    assert ingest_as(radiologist, mg_dataset(seed=1)).uploaded_by == radiologist
    assert ingest_file(file=io.BytesIO(to_bytes(mg_dataset(seed=2))), filename="x").image.uploaded_by is None


def test_an_api_client_lists_only_the_records_of_its_own_uploads(api, champion, radiologist, other_client_user):
    own = Image.objects.get(pk=upload(api, to_bytes(mg_dataset(patient_id="OWN-1"))).json()["id"])
    by_reader = ingest_as(radiologist, mg_dataset(patient_id="THEIRS-1", seed=1))
    by_other_client = ingest_as(other_client_user, mg_dataset(patient_id="THEIRS-2", seed=2))
    assert ids(api, "/api/v1/studies/") == {own.study_id}
    assert ids(api, "/api/v1/images/") == {own.pk}
    assert ids(api, "/api/v1/predictions/") == set(Prediction.objects.filter(image=own).values_list("pk", flat=True))
    # Its one patient, under its pseudonym and without the portal's number (tests/portal/test_client_identity.py).
    [patient] = api.get("/api/v1/patients/").json()["results"]
    assert patient["patient_id"] == api.get(f"/api/v1/studies/{own.study_id}/").json()["patient"]
    assert ids(api, f"/api/v1/images/?study={by_reader.study_id}") == set()
    assert ids(api, f"/api/v1/predictions/?image={by_other_client.pk}") == set()


def test_another_accounts_study_image_prediction_and_files_are_not_found(api, champion, radiologist):
    own = Image.objects.get(pk=upload(api, to_bytes(mg_dataset(patient_id="OWN-1"))).json()["id"])
    theirs = ingest_as(radiologist, mg_dataset(patient_id="THEIRS-1", seed=1))
    for image in (own, theirs):
        renditions.render_image(image.pk)  # what the render worker does after ingest
        prediction = give_heatmap(image)
        urls = [
            f"/api/v1/studies/{image.study_id}/",
            f"/api/v1/images/{image.pk}/",
            f"/api/v1/images/{image.pk}/rendition/",
            f"/api/v1/images/{image.pk}/full/",
            f"/api/v1/predictions/{prediction.pk}/",
            f"/api/v1/predictions/{prediction.pk}/heatmap/",
        ]
        expected = 200 if image == own else 404  # 404, not 403: ids cannot be probed
        assert {url: api.get(url).status_code for url in urls} == dict.fromkeys(urls, expected)
        # A patient by the portal's number: not found for a client that may not see identity, even its own.
        assert api.get(f"/api/v1/patients/{image.study.patient_id}/").status_code == 404


def test_readers_and_clients_granted_view_all_studies_see_every_study(rad_api, api, api_client_user, radiologist):
    studies = {ingest_as(None, mg_dataset(patient_id=f"P{i}", seed=i)).study_id for i in range(2)}
    assert ids(rad_api, "/api/v1/studies/") == studies
    assert ids(api, "/api/v1/studies/") == set()
    group = Group.objects.create(name="partners")
    group.permissions.add(Permission.objects.get(codename="view_all_studies"))
    api_client_user.groups.add(group)
    granted = APIClient()
    granted.force_authenticate(type(api_client_user).objects.get(pk=api_client_user.pk))  # permissions reloaded
    assert ids(granted, "/api/v1/studies/") == studies
    assert ids(granted, "/api/v1/images/") == set(Image.objects.values_list("pk", flat=True))


@pytest.mark.parametrize("owner", ["radiologist", "other client"])
def test_an_upload_into_another_accounts_study_gets_one_answer_whatever_the_patient_id(
    api, radiologist, other_client_user, media_root, owner
):
    """A right guess of the PatientID and a wrong one are refused alike: the portal is no oracle."""
    first = mg_dataset(patient_id="REAL-1")
    ingest_as(radiologist if owner == "radiologist" else other_client_user, first)
    before = stored_files(media_root)
    answers = []
    for seed, patient_id in enumerate(["REAL-1", "GUESS-2"], start=1):
        response = upload(api, to_bytes(mg_dataset(patient_id=patient_id, study_uid=first.StudyInstanceUID, seed=seed)))
        answers.append((response.status_code, response.json()))
    assert answers[0] == answers[1]
    status, body = answers[0]
    assert status == 409 and body["error"]["code"] == "conflict"
    assert "REAL-1" not in str(body) and "GUESS-2" not in str(body)
    assert Image.objects.count() == 1 and Study.objects.count() == 1
    assert list(Patient.objects.values_list("patient_id", flat=True)) == ["REAL-1"]
    assert stored_files(media_root) == before  # no orphan file


def test_an_upload_of_another_patient_into_a_study_one_may_see_is_refused_the_same_way(
    api, rad_api, radiologist, other_client_user
):
    theirs = mg_dataset(patient_id="REAL-1")
    ingest_as(other_client_user, theirs)
    refused_client = upload(api, to_bytes(mg_dataset(patient_id="REAL-1", study_uid=theirs.StudyInstanceUID, seed=1)))
    refused_reader = upload(
        rad_api, to_bytes(mg_dataset(patient_id="SOMEONE-ELSE", study_uid=theirs.StudyInstanceUID, seed=2))
    )
    assert (refused_reader.status_code, refused_reader.json()) == (refused_client.status_code, refused_client.json())
    joined = upload(rad_api, to_bytes(mg_dataset(patient_id="REAL-1", study_uid=theirs.StudyInstanceUID, seed=3)))
    assert joined.status_code == 201 and Study.objects.count() == 1


def test_an_api_client_adds_images_to_its_own_study(api):
    first = mg_dataset(patient_id="OWN-1")
    upload(api, to_bytes(first))
    second = upload(api, to_bytes(mg_dataset(patient_id="OWN-1", study_uid=first.StudyInstanceUID, seed=1)))
    assert second.status_code == 201 and Study.objects.get().images.count() == 2


def test_the_same_file_or_sop_instance_as_another_accounts_image_is_refused_not_returned(
    api, other_client_user, media_root
):
    ds = mg_dataset(patient_id="REAL-1")
    ingest_as(other_client_user, ds)
    same_bytes = upload(api, to_bytes(ds))
    ds.Manufacturer = "Re-exported"
    same_sop = upload(api, to_bytes(ds))
    for response in (same_bytes, same_sop):
        assert response.status_code == 409 and "id" not in response.json()  # not their image
        assert "REAL-1" not in response.content.decode()
    assert same_bytes.json() == same_sop.json()
    assert Image.objects.count() == 1 and len(stored_files(media_root)) == 1  # their original; nothing of ours


def test_a_png_never_joins_another_accounts_open_study_of_the_same_patient(api, other_api):
    theirs = upload(other_api, png_bytes(1), "a.png", patient_id="P-SAME").json()
    mine = upload(api, png_bytes(2), "b.png", patient_id="P-SAME").json()
    assert mine["study"] != theirs["study"]
    assert ids(api, "/api/v1/images/") == {mine["id"]}


def test_an_image_for_a_reported_study_reopens_it_with_an_audit_event(rad_api, radiologist, champion):
    first = mg_dataset(patient_id="P-1")
    study = ingest_as(radiologist, first).study
    review_submit(study=study, radiologist=radiologist, decision="normal", birads=1)
    assert ids(rad_api, "/api/v1/worklist/?status=unread") == set()
    response = upload(rad_api, to_bytes(mg_dataset(patient_id="P-1", study_uid=first.StudyInstanceUID, seed=1)))
    assert response.status_code == 201
    study.refresh_from_db()
    assert study.status == Study.Status.NEW
    event = AuditEvent.objects.get(action="study_reopen")
    assert event.study_id == study.pk and event.user == radiologist
    assert event.detail["image"] == response.json()["id"] and event.detail["why"]
    assert ids(rad_api, "/api/v1/worklist/?status=unread") == {study.pk}
    for prediction in Prediction.objects.filter(image__study=study, status=Prediction.Status.QUEUED):
        run_prediction(prediction.pk)
    study.refresh_from_db()
    assert study.status == Study.Status.PREDICTED  # then read again like any new case


def test_pseudonyms_are_per_client(api, other_api, api_client_user, django_user_model):
    mine = upload(api, png_bytes(1), "a.png", patient_id="P-SAME").json()["study"]
    theirs = upload(other_api, png_bytes(2), "b.png", patient_id="P-SAME").json()["study"]
    seen_by_me = api.get(f"/api/v1/studies/{mine}/").json()["patient"]
    seen_by_them = other_api.get(f"/api/v1/studies/{theirs}/").json()["patient"]
    assert seen_by_me.startswith("anon-") and seen_by_them.startswith("anon-")
    assert seen_by_me != seen_by_them
    assert api.get("/api/v1/patients/").json()["results"][0]["patient_id"] == seen_by_me  # one per viewer
    auditor = _user(django_user_model, "auditor", "api_client")
    auditor.user_permissions.add(Permission.objects.get(codename="view_all_studies"))
    seen_by_auditor = {row["patient"] for row in _token_client(auditor).get("/api/v1/studies/").json()["results"]}
    assert len(seen_by_auditor) == 1 and seen_by_auditor.isdisjoint({seen_by_me, seen_by_them})


def test_study_detail_for_an_api_client_carries_no_reviews_notes_or_reader_names(api, radiologist):
    study_id = upload(api, to_bytes(mg_dataset(patient_id="OWN-1"))).json()["study"]
    review_submit(
        study=Study.objects.get(pk=study_id), radiologist=radiologist, decision="normal", birads=2, note="benign cyst"
    )
    assert api.get(f"/api/v1/studies/{study_id}/reviews/").status_code == 403
    detail = api.get(f"/api/v1/studies/{study_id}/")
    assert detail.status_code == 200 and "reviews" not in detail.json()
    assert "benign cyst" not in detail.content.decode() and f'"{radiologist.username}"' not in detail.content.decode()


def test_readers_still_get_reviews_in_the_study_detail(rad_api, radiologist):
    study = ingest_as(None, mg_dataset()).study
    review_submit(study=study, radiologist=radiologist, decision="normal", birads=1, note="fine")
    reviews = rad_api.get(f"/api/v1/studies/{study.pk}/").json()["reviews"]
    assert [(r["radiologist"], r["note"]) for r in reviews] == [("rad", "fine")]


@pytest.mark.parametrize("endpoint", ["/api/v1/studies/", "/api/v1/images/"])
def test_a_patient_id_in_the_query_string_is_refused(rad_api, api, endpoint):
    ingest_as(None, mg_dataset(patient_id="REAL-ID"))
    for client in (rad_api, api):
        response = client.get(endpoint, {"patient": "REAL-ID"})
        assert response.status_code == 400
        assert "patient" in response.json()["error"]["fields"]
        assert "REAL-ID" not in response.content.decode()


def test_studies_and_images_filter_by_the_portals_patient_number(rad_api, api):
    wanted = ingest_as(None, mg_dataset(patient_id="P-A")).study
    ingest_as(None, mg_dataset(patient_id="P-B", seed=1))
    number = rad_api.get(f"/api/v1/studies/{wanted.pk}/").json()["patient_number"]
    assert number == wanted.patient_id
    assert ids(rad_api, f"/api/v1/studies/?patient_number={number}") == {wanted.pk}
    assert ids(rad_api, f"/api/v1/images/?patient_number={number}") == set(wanted.images.values_list("pk", flat=True))
    # A client that may not see identity may not probe the portal's numbers (tests/portal/test_client_identity.py).
    assert api.get(f"/api/v1/studies/?patient_number={number}").status_code == 400


def test_the_openapi_schema_documents_patient_number_and_no_patient_filter(rad_api):
    schema = rad_api.get("/api/schema/", {"format": "json"}).json()
    for path in ("/api/v1/studies/", "/api/v1/images/"):
        names = {p["name"] for p in schema["paths"][path]["get"]["parameters"]}
        assert "patient_number" in names and "patient" not in names
    assert "reviews" in schema["components"]["schemas"]["StudyCase"]["properties"]


def test_an_upload_from_the_page_is_audited_as_page_and_one_by_token_as_api(api, radiologist):
    page = APIClient()
    page.force_login(radiologist)  # the upload page posts with the browser's session
    by_page = upload(page, png_bytes(1), "a.png", patient_id="P-1").json()["id"]
    by_token = upload(api, png_bytes(2), "b.png", patient_id="P-2").json()["id"]
    via = dict(AuditEvent.objects.filter(action="ingest").values_list("object_id", "detail__via"))
    assert via == {str(by_page): "page", str(by_token): "api"}


def test_a_client_limited_to_its_uploads_cannot_read_a_real_patients_identity_by_guessing_her_id(
    api, api_client_user, radiologist
):
    """'Can view patient' alone shows identity only with 'Can see every study': else a guessed
    PatientID in an upload would bring back the name and birth date the portal already holds."""
    real = mg_dataset(patient_id="GUESS-ME", seed=3)
    real.PatientName = "Realname^Jane"
    ingest_file(file=io.BytesIO(to_bytes(real)), filename="r.dcm", user=radiologist)
    guess = mg_dataset(patient_id="GUESS-ME", seed=4, study_uid="1.2.826.0.1.3680043.99.1")
    api_client_user.user_permissions.add(Permission.objects.get(codename="view_patient"))
    assert upload(api, to_bytes(guess)).status_code == 201
    patients = api.get("/api/v1/patients/").json()["results"]
    assert [p["name"] for p in patients] == [""] and patients[0]["patient_id"].startswith("anon-")
    assert "Realname" not in api.get("/api/v1/studies/").content.decode()
