"""REST and DICOMweb authentication besides `Token`: HTTP Basic with a portal account (guarded by
django-axes like every login), `Bearer` with the API token, and OIDC bearer tokens checked against an
identity provider's keys (a locally generated RSA key, its JWKS served over HTTP)."""

from __future__ import annotations

import base64
import http.server
import io
import json
import threading
import time

import jwt
import pydicom
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from dicomweb_client.api import DICOMwebClient
from dicomweb_client.session_utils import create_session_from_user_pass
from django.conf import settings as django_settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from screening.intake.services.ingest import ingest_file
from screening.models import AuditEvent, Image
from tests.dicom_factory import mg_dataset, phantom, to_bytes

PASSWORD = "a-long-test-password"
LIMIT = getattr(django_settings, "AXES_FAILURE_LIMIT", 5)
live = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def client_with(authorization: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=authorization)
    return client


@live
def test_dicomweb_client_with_basic_auth_stores_chunked_and_searches(live_server, radiologist):
    client = DICOMwebClient(url=f"{live_server.url}/dicomweb", session=create_session_from_user_pass("rad", PASSWORD))
    ds = pydicom.dcmread(io.BytesIO(to_bytes(mg_dataset(phantom(1024, 800), patient_id="PAT-BASIC"))))
    answer = client.store_instances([ds])  # chunked: over 1 MB
    assert answer.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == ds.SOPInstanceUID
    assert Image.objects.get(sop_uid=ds.SOPInstanceUID).uploaded_by == radiologist
    found = client.search_for_studies(search_filters={"PatientID": "PAT-BASIC"})
    assert found[0]["0020000D"]["Value"] == [ds.StudyInstanceUID]


@live
def test_dicomweb_client_with_a_bearer_token_retrieves(live_server, radiologist):
    image = ingest_file(file=io.BytesIO(to_bytes(mg_dataset())), user=radiologist).image
    key = Token.objects.create(user=radiologist).key
    client = DICOMwebClient(url=f"{live_server.url}/dicomweb", headers={"Authorization": f"Bearer {key}"})
    assert client.search_for_studies()[0]["0020000D"]["Value"] == [image.study.study_uid]
    assert client.retrieve_study_metadata(image.study.study_uid)


@pytest.mark.django_db
def test_basic_and_bearer_work_on_the_rest_api_and_bad_ones_are_401(radiologist):
    assert client_with(basic("rad", PASSWORD)).get("/api/v1/studies/").status_code == 200
    key = Token.objects.create(user=radiologist).key
    assert client_with(f"Bearer {key}").get("/api/v1/studies/").status_code == 200
    refused = client_with(basic("rad", "wrong password")).get("/api/v1/studies/")
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "not_authenticated"
    assert client_with("Bearer " + "0" * 40).get("/dicomweb/studies").status_code == 401
    # A 401 names the Token scheme, never Basic (a browser would pop up a password dialog).
    assert client_with("Bearer nope").get("/dicomweb/studies")["WWW-Authenticate"] == "Token"


@pytest.mark.django_db
def test_basic_auth_on_dicomweb_is_locked_out_like_every_login(radiologist):
    for _ in range(LIMIT):
        client_with(basic("rad", "wrong password")).get("/dicomweb/studies")
    refused = client_with(basic("rad", PASSWORD)).get("/dicomweb/studies")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "locked_out" and "Retry-After" in refused


@pytest.mark.django_db
def test_a_remembered_basic_password_obeys_a_lockout_and_a_password_change(radiologist):
    assert client_with(basic("rad", PASSWORD)).get("/dicomweb/studies").status_code == 200  # now remembered
    radiologist.set_password("another-long-password")
    radiologist.save()
    assert client_with(basic("rad", PASSWORD)).get("/dicomweb/studies").status_code == 401
    assert client_with(basic("rad", "another-long-password")).get("/dicomweb/studies").status_code == 200
    for _ in range(LIMIT):
        client_with(basic("rad", "wrong password")).get("/dicomweb/studies")
    assert client_with(basic("rad", "another-long-password")).get("/dicomweb/studies").status_code == 429


# --- OIDC ---------------------------------------------------------------------------------------


class _Jwks(http.server.BaseHTTPRequestHandler):
    body = b"{}"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def identity_provider(settings):
    """An RSA key whose public half is served as a JWKS; the portal configured to trust it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="test-key", use="sig", alg="RS256")
    handler = type("Jwks", (_Jwks,), {"body": json.dumps({"keys": [jwk]}).encode()})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings.PORTAL_OIDC_ISSUER = "https://idp.example.org/realms/screening"
    settings.PORTAL_OIDC_AUDIENCE = "screening-portal"
    settings.PORTAL_OIDC_JWKS_URL = f"http://127.0.0.1:{server.server_address[1]}/certs"

    def issue(signing_key=key, algorithm="RS256", **claims) -> str:
        now = int(time.time())
        body = {
            "iss": settings.PORTAL_OIDC_ISSUER,
            "aud": settings.PORTAL_OIDC_AUDIENCE,
            "iat": now,
            "exp": now + 300,
            "preferred_username": "rad",
            **claims,
        }
        return jwt.encode(body, signing_key, algorithm=algorithm, headers={"kid": "test-key"})

    yield issue
    server.shutdown()


@pytest.mark.django_db
def test_an_oidc_access_token_signed_by_the_identity_provider_is_its_portal_account(identity_provider, radiologist):
    image = ingest_file(file=io.BytesIO(to_bytes(mg_dataset())), user=radiologist).image
    client = client_with(f"Bearer {identity_provider()}")
    response = client.get("/dicomweb/studies")
    assert response.status_code == 200 and len(response.json()) == 1
    client.get(f"/dicomweb/studies/{image.study.study_uid}/metadata")
    assert AuditEvent.objects.filter(action="dicomweb_retrieve", user=radiologist).exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "make",
    [
        lambda issue: issue(exp=int(time.time()) - 600),  # expired
        lambda issue: issue(aud="another-app"),
        lambda issue: issue(iss="https://evil.example.org"),
        lambda issue: issue(signing_key=rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        lambda issue: issue(preferred_username="nobody-here"),
        lambda issue: issue(signing_key="a-shared-secret-of-32-bytes-or-more!", algorithm="HS256"),
        lambda issue: issue()[:-4] + "AAAA",  # a tampered signature
    ],
    ids=["expired", "audience", "issuer", "foreign-key", "unknown-account", "hmac", "tampered"],
)
def test_an_oidc_token_that_does_not_check_out_is_401(identity_provider, radiologist, make):
    response = client_with(f"Bearer {make(identity_provider)}").get("/dicomweb/studies")
    assert response.status_code == 401, response.content
    assert response.json()["error"]["code"] == "not_authenticated"


@pytest.mark.django_db
def test_an_inactive_account_gets_nothing_by_oidc(identity_provider, radiologist):
    radiologist.is_active = False
    radiologist.save()
    assert client_with(f"Bearer {identity_provider()}").get("/dicomweb/studies").status_code == 401


@pytest.mark.django_db
def test_without_an_identity_provider_a_jwt_bearer_is_only_a_wrong_token(radiologist, settings):
    settings.PORTAL_OIDC_ISSUER = ""
    token = jwt.encode({"preferred_username": "rad"}, "k" * 32, algorithm="HS256")
    assert client_with(f"Bearer {token}").get("/dicomweb/studies").status_code == 401


# --- CORS ---------------------------------------------------------------------------------------

VIEWER = "https://viewer.example.org"


def preflight(client):
    return client.options(
        "/dicomweb/studies",
        HTTP_ORIGIN=VIEWER,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization",
    )


@pytest.mark.django_db
def test_cors_is_off_by_default(client, rad_api):
    assert "Access-Control-Allow-Origin" not in preflight(client)
    assert "Access-Control-Allow-Origin" not in rad_api.get("/dicomweb/studies", HTTP_ORIGIN=VIEWER)


@pytest.mark.django_db
def test_an_allowed_origin_gets_its_preflight_answered_without_credentials(client, rad_api, settings):
    settings.PORTAL_DICOMWEB_CORS_ORIGINS = [VIEWER]
    answer = preflight(client)
    assert answer.status_code == 204
    assert answer["Access-Control-Allow-Origin"] == VIEWER
    assert "Authorization" in answer["Access-Control-Allow-Headers"]
    assert "Access-Control-Allow-Credentials" not in answer  # never a portal session cross-origin
    response = rad_api.get("/dicomweb/studies", HTTP_ORIGIN=VIEWER)
    assert response.status_code == 200 and response["Access-Control-Allow-Origin"] == VIEWER
    assert "Warning" in response["Access-Control-Expose-Headers"] and "Origin" in response["Vary"]
    # Still no data without credentials, and nothing for another origin or outside DICOMweb.
    assert client.get("/dicomweb/studies", HTTP_ORIGIN=VIEWER).status_code == 401
    assert "Access-Control-Allow-Origin" not in rad_api.get("/dicomweb/studies", HTTP_ORIGIN="https://evil.example")
    assert "Access-Control-Allow-Origin" not in rad_api.get("/api/v1/studies/", HTTP_ORIGIN=VIEWER)


def test_a_wildcard_or_malformed_cors_origin_stops_start_up(monkeypatch):
    from django.core.exceptions import ImproperlyConfigured

    from portal.env import env_origins

    monkeypatch.setenv("PORTAL_DICOMWEB_CORS_ORIGINS", f"{VIEWER}, http://[::1]:3000, http://localhost:3000")
    assert env_origins("PORTAL_DICOMWEB_CORS_ORIGINS") == [VIEWER, "http://[::1]:3000", "http://localhost:3000"]
    for bad in ("*", "viewer.example.org", "https://viewer.example.org/path"):
        monkeypatch.setenv("PORTAL_DICOMWEB_CORS_ORIGINS", bad)
        with pytest.raises(ImproperlyConfigured, match="PORTAL_DICOMWEB_CORS_ORIGINS"):
            env_origins("PORTAL_DICOMWEB_CORS_ORIGINS")


@pytest.mark.django_db
def test_the_cache_never_holds_an_accounts_password_hash(radiologist):
    from django.core.cache import cache

    from screening.api.authentication import _basic_key

    assert client_with(basic("rad", PASSWORD)).get("/dicomweb/studies").status_code == 200
    remembered = cache.get(_basic_key("rad", PASSWORD))
    assert remembered is not None and radiologist.password not in repr(remembered)
