"""A reader's hanging protocol is kept on the server, per user: the JSON endpoint under the reader's session
(CSRF-checked), validated against the protocols the viewer knows, and the viewer page opens with it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from screening.models import ReaderPreference
from screening.reading.models import HangingProtocol

URL = "/reading/preferences/"
PROTOCOLS_JS = Path(__file__).resolve().parents[2] / "static" / "viewer" / "src" / "protocols.js"


def test_the_server_knows_exactly_the_viewers_protocols():
    ids = re.findall(r'^\s*id: "([a-z-]+)",', PROTOCOLS_JS.read_text(), flags=re.MULTILINE)
    assert ids and set(ids) == set(HangingProtocol.values)


def test_the_url_is_the_named_one():
    assert reverse("reading-preferences") == URL


@pytest.mark.django_db
def test_a_reader_starts_with_the_four_up_and_keeps_a_choice(client, radiologist, second_radiologist):
    client.force_login(radiologist)
    assert client.get(URL).json()["hanging_protocol"] == "four-up"
    response = client.post(URL, {"hanging_protocol": "sequence"}, content_type="application/json")
    assert response.status_code == 200 and response.json()["hanging_protocol"] == "sequence"
    assert ReaderPreference.objects.get(user=radiologist).hanging_protocol == "sequence"
    client.post(URL, {"hanging_protocol": "prior"}, content_type="application/json")
    assert ReaderPreference.objects.filter(user=radiologist).count() == 1  # changed in place
    assert client.get(URL).json()["hanging_protocol"] == "prior"
    other = Client()
    other.force_login(second_radiologist)
    assert other.get(URL).json()["hanging_protocol"] == "four-up"  # one reader's choice is theirs alone


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [b'{"hanging_protocol": "six-up"}', b'{"hanging_protocol": 3}', b'["sequence"]', b"{}", b"not json", b"\xff"],
)
def test_anything_but_a_known_protocol_is_a_400_json_error(client, radiologist, body):
    client.force_login(radiologist)
    response = client.post(URL, body, content_type="application/json")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["message"]
    assert not ReaderPreference.objects.exists()


@pytest.mark.django_db
def test_a_post_without_the_csrf_token_is_refused(radiologist):
    client = Client(enforce_csrf_checks=True)
    client.force_login(radiologist)
    response = client.post(URL, {"hanging_protocol": "sequence"}, content_type="application/json")
    assert response.status_code == 403
    assert not ReaderPreference.objects.exists()
    client.get(reverse("worklist"))  # any page sets the CSRF cookie the viewer sends back
    token = client.cookies["csrftoken"].value
    response = client.post(
        URL, {"hanging_protocol": "sequence"}, content_type="application/json", HTTP_X_CSRFTOKEN=token
    )
    assert response.status_code == 200


@pytest.mark.django_db
def test_a_user_who_does_not_read_has_no_reading_preferences(client, api_client_user):
    client.force_login(api_client_user)
    assert client.post(URL, {"hanging_protocol": "sequence"}, content_type="application/json").status_code == 403
    assert not ReaderPreference.objects.exists()


@pytest.mark.django_db
def test_the_database_refuses_an_unknown_protocol(radiologist):
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        ReaderPreference.objects.create(user=radiologist, hanging_protocol="six-up")
