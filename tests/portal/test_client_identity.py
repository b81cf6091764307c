"""What an API client that may not see patient identity learns: not whether a guessed woman is already in the
programme, no accession number, comments, description or referring physician (API and DICOM downloads), and
no outcome of another uploader's study."""

from __future__ import annotations

import io

import pydicom
import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from screening.exchange.web import series_uid
from screening.intake.services.ingest import ingest_file
from screening.models import Image, Outcome, Study
from screening.reading.services.outcomes import OutcomeInput, record_outcome
from tests.conftest import _token_client
from tests.dicom_factory import mg_dataset, to_bytes
from tests.uploads import upload

pytestmark = pytest.mark.django_db

TEXTS = {
    "AccessionNumber": "ACC-SECRET",
    "PatientComments": "lives at 1 Secret Street",
    "StudyDescription": "Mammo for Jane Secret",
    "ReferringPhysicianName": "Doctor^Secret",
}


def _patient_fields(api, study_id: int) -> dict:
    study = api.get(f"/api/v1/studies/{study_id}/").json()
    [patient] = [p for p in api.get("/api/v1/patients/").json()["results"] if p["patient_id"] == study["patient"]]
    return {"patient_number": study["patient_number"], "id": patient["id"], "created": patient["created"]}


def test_a_guessed_patient_id_answers_the_same_as_an_unknown_one(api, radiologist):
    known = ingest_file(
        file=io.BytesIO(to_bytes(mg_dataset(patient_id="KNOWN-1", seed=1))), filename="k.dcm", user=radiologist
    ).image.study
    guessed = upload(api, to_bytes(mg_dataset(patient_id="KNOWN-1", seed=2, study_uid="1.2.826.0.1.3680043.99.7")))
    fresh = upload(api, to_bytes(mg_dataset(patient_id="NEW-1", seed=3)))
    assert guessed.status_code == fresh.status_code == 201
    answers = [_patient_fields(api, response.json()["study"]) for response in (guessed, fresh)]
    assert answers == [{"patient_number": None, "id": None, "created": None}] * 2
    # Probing the portal's numbers is refused, and a patient by number is not found.
    response = api.get(f"/api/v1/studies/?patient_number={known.patient_id}")
    assert response.status_code == 400 and response.json()["error"]["fields"]["patient_number"]
    assert api.get(f"/api/v1/images/?patient_number={known.patient_id}").status_code == 400
    assert api.get(f"/api/v1/patients/{known.patient_id}/").status_code == 404


def _study_with_texts(user) -> Study:
    ds = mg_dataset(patient_id="TXT-1", seed=5)
    for keyword, text in TEXTS.items():
        setattr(ds, keyword, text)
    return ingest_file(file=io.BytesIO(to_bytes(ds)), filename="t.dcm", user=user).image.study


@pytest.fixture
def all_studies_client(api_client_user):
    api_client_user.user_permissions.add(Permission.objects.get(codename="view_all_studies"))
    return _token_client(api_client_user)


def _downloads(client, study: Study) -> list[str]:
    """The study as JSON and DICOM: API list and detail, QIDO, WADO metadata, the WADO instance's header."""
    image = Image.objects.get(study=study)
    base = f"/dicomweb/studies/{study.study_uid}/series/{series_uid(image)}/instances/{image.sop_uid}"
    instance = client.get(base, HTTP_ACCEPT="application/dicom")
    assert instance.status_code == 200
    body = b"".join(instance.streaming_content) if instance.streaming else instance.content
    header = pydicom.dcmread(io.BytesIO(body), stop_before_pixels=True)
    texts = [
        client.get("/api/v1/studies/").content.decode(),
        client.get(f"/api/v1/studies/{study.pk}/").content.decode(),
        client.get("/dicomweb/studies").content.decode(),
        client.get(base + "/metadata").content.decode(),
        "\n".join(str(element.value) for element in header),
    ]
    return texts


def test_a_client_without_identity_gets_no_accession_comments_description_or_referrer(all_studies_client, radiologist):
    study = _study_with_texts(radiologist)
    for text in _downloads(all_studies_client, study):
        leaked = [keyword for keyword, value in TEXTS.items() if value.split("^")[-1] in text]
        assert not leaked, (leaked, text[:300])
    # Nor can it search by one.
    response = all_studies_client.get("/dicomweb/studies?AccessionNumber=ACC-SECRET")
    assert response.status_code == 403


def test_a_reader_still_gets_them(radiologist):
    study = _study_with_texts(radiologist)
    texts = _downloads(_token_client(radiologist), study)
    assert "ACC-SECRET" in texts[0] and "ACC-SECRET" in texts[2]
    assert all(value in texts[4] for value in ("ACC-SECRET", "1 Secret Street", "Jane Secret", "Doctor^Secret"))


def test_the_outcomes_page_shows_an_api_client_only_the_outcomes_of_its_own_uploads(api_client_user, admin_user):
    api_client_user.user_permissions.add(Permission.objects.get(codename="add_outcome"))
    mine = ingest_file(
        file=io.BytesIO(to_bytes(mg_dataset(patient_id="MINE", seed=1))), filename="m.dcm", user=api_client_user
    ).image.study
    theirs = ingest_file(file=io.BytesIO(to_bytes(mg_dataset(patient_id="THEIRS", seed=2))), filename="t.dcm").image
    for study, result in ((mine, "benign"), (theirs.study, "no_cancer")):
        record_outcome(item=OutcomeInput(study=study, laterality="L", result=result), user=admin_user)
    assert Outcome.objects.count() == 2
    page = Client()
    page.force_login(api_client_user)
    text = page.get("/outcomes/").content.decode()
    assert f"#{mine.pk}<" in text and f"#{theirs.study_id}<" not in text
