"""Every read of patient data is an audit event (portal.middleware.ReadAuditMiddleware): pages, API lists and
details, image files, viewer data, worklists, QIDO searches and the admin's patient pages; one event per request,
never the values of its query (a QIDO search may hold a PatientID)."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client

from screening.models import AuditEvent, Image
from tests.conftest import _token_client
from tests.portal.reading_fixtures import make_study

pytestmark = pytest.mark.django_db


@pytest.fixture
def study():
    study = make_study("AUD-7", 0.4, False)
    image = study.images.get()
    image.rendition = default_storage.save("renditions/r.png", ContentFile(b"\x89PNG fake"))
    image.save(update_fields=["rendition"])
    return study


def _reads() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="read").order_by("id"))


READER_URLS = {
    "api patient list": ("/api/v1/patients/", None),
    "api study list": ("/api/v1/studies/", None),
    "api study detail": ("/api/v1/studies/{study}/", "study"),
    "api image list": ("/api/v1/images/", None),
    "api image detail": ("/api/v1/images/{image}/", None),
    "image file": ("/api/v1/images/{image}/rendition/", None),
    "api worklist": ("/api/v1/worklist/", None),
    "api reading worklist": ("/api/v1/reading/worklist/", None),
    "qido studies": ("/dicomweb/studies?PatientID=AUD-7", None),
    "qido series": ("/dicomweb/studies/{uid}/series", None),
}
PAGE_URLS = {
    "worklist page": ("/", None),
    "viewer data": ("/studies/{study}/viewer-data/", "study"),
    "reading page": ("/reading/", None),
    "admin patient list": ("/admin/screening/patient/", None),
    "admin patient page": ("/admin/screening/patient/{patient}/change/", None),
    "admin study page": ("/admin/screening/study/{study}/change/", "study"),
}


def _url(template: str, study) -> str:
    image = Image.objects.get(study=study)
    return template.format(study=study.pk, image=image.pk, uid=study.study_uid, patient=study.patient_id)


@pytest.mark.parametrize("name", list(READER_URLS))
def test_an_api_read_of_patient_data_is_audited_once_without_its_query_values(name, study, radiologist):
    template, linked = READER_URLS[name]
    response = _token_client(radiologist).get(_url(template, study))
    assert response.status_code == 200, response.content[:200]
    [event] = _reads()
    assert (event.user_id, event.username) == (radiologist.pk, "rad")
    assert event.study_id == (study.pk if linked else None)
    assert "AUD-7" not in str(event.detail)
    if "?" in template:
        assert event.detail["query"] == ["PatientID"]


@pytest.mark.parametrize("name", list(PAGE_URLS))
def test_a_page_read_of_patient_data_is_audited_once(name, study, admin_user):
    template, linked = PAGE_URLS[name]
    client = Client()
    client.force_login(admin_user)
    response = client.get(_url(template, study))
    assert response.status_code == 200
    [event] = _reads()
    assert event.user_id == admin_user.pk and event.study_id == (study.pk if linked else None)
    assert event.detail["route"]


def test_pages_without_patient_data_and_refused_requests_add_no_read(study, admin_user, api_client_user):
    client = Client()
    client.force_login(admin_user)
    for url in (
        "/healthz",
        "/api/schema/",
        "/reading/policy/",
        "/performance/",
        "/models/",
        "/admin/screening/modelversion/",
    ):
        assert client.get(url).status_code == 200, url
    outsider = _token_client(api_client_user)  # sent nothing: the study is not theirs
    assert outsider.get(f"/api/v1/studies/{study.pk}/").status_code == 404
    assert _reads() == []


def test_a_dicomweb_retrieve_keeps_its_own_event_and_gets_no_second(study, radiologist):
    image = study.images.get()
    from screening.exchange.web import series_uid

    url = f"/dicomweb/studies/{study.study_uid}/series/{series_uid(image)}/instances/{image.sop_uid}/metadata"
    assert _token_client(radiologist).get(url).status_code == 200
    assert _reads() == []
    assert AuditEvent.objects.filter(action="dicomweb_retrieve").count() == 1
