"""What a new user meets first: HEAD and GET answer sensibly where a person or a monitor tries them."""

from __future__ import annotations

import io

import pytest
from django.urls import reverse

from screening.models import AuditEvent, CaseLock
from screening.services import ingest_file
from tests.dicom_factory import mg_dataset, to_bytes

pytestmark = pytest.mark.django_db


def test_head_of_the_home_page_answers_like_get_without_a_body(client, radiologist):
    anonymous = client.head("/")
    assert anonymous.status_code == 302 and anonymous["Location"].startswith(reverse("login"))
    client.force_login(radiologist)
    response = client.head("/")
    assert response.status_code == 200 and response.content == b""
    assert response["Content-Type"].startswith("text/html")


def test_head_of_the_health_check_answers_200(client):
    assert client.head(reverse("healthz")).status_code == 200


def test_a_head_of_a_case_neither_locks_it_nor_audits_an_opening(client, radiologist):
    image = ingest_file(file=io.BytesIO(to_bytes(mg_dataset())), filename="x.dcm", user=radiologist).image
    client.force_login(radiologist)
    before = AuditEvent.objects.count()
    response = client.head(reverse("study-viewer", args=[image.study_id]))
    assert response.status_code == 200 and response.content == b""
    assert not CaseLock.objects.exists()
    assert AuditEvent.objects.count() == before
    assert client.head(reverse("study-viewer", args=[image.study_id + 999])).status_code == 404


def test_get_of_the_assign_address_opens_the_reading_page_at_its_form(client, admin_user):
    client.force_login(admin_user)
    response = client.get(reverse("reading-assign"))
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('reading')}?site=default#assign"
    page = client.get(response["Location"])
    assert b'id="assign"' in page.content


def test_a_reader_gets_403_at_the_assign_address_not_405(client, radiologist):
    client.force_login(radiologist)
    assert client.get(reverse("reading-assign")).status_code == 403
