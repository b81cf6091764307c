"""Logins, client addresses, response headers and error pages: what every way in shares.

One brute-force guard (django-axes) for the login page, the admin login and the token endpoint,
keyed by account and by client address; X-Forwarded-For believed only from trusted proxies; a
Content-Security-Policy on every page; `Cache-Control: no-store` on patient data; styled error
pages with the navigation.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from unittest import mock

import pytest
from django.conf import settings as django_settings
from django.contrib.staticfiles import finders
from django.test import Client, RequestFactory
from django.urls import get_resolver, reverse

from screening.audit.services import client_ip
from screening.intake.services import renditions
from screening.intake.services.ingest import ingest_file
from tests.dicom_factory import mg_dataset, to_bytes

PASSWORD = "a-long-test-password"
ROOT = Path(__file__).resolve().parents[2]
LIMIT = getattr(django_settings, "AXES_FAILURE_LIMIT", 5)

pytestmark = pytest.mark.django_db


def login_page(client: Client, username: str, password: str, **meta):
    return client.post(reverse("login"), {"username": username, "password": password}, **meta)


def admin_login(client: Client, username: str, password: str, **meta):
    return client.post("/admin/login/", {"username": username, "password": password, "next": "/admin/"}, **meta)


def token(client: Client, username: str, password: str, **meta):
    return client.post("/api/v1/auth/token/", {"username": username, "password": password}, **meta)


# --- one guard for every way in ---------------------------------------------------------------


@pytest.mark.parametrize("attempt", [login_page, admin_login, token], ids=["login-page", "admin-login", "token"])
def test_repeated_failed_logins_lock_every_way_in(client, admin_user, attempt):
    codes = [attempt(client, "boss", "wrong password").status_code for _ in range(LIMIT)]
    assert codes[0] in (200, 400) and codes[-1] == 429  # the form or the API's 400, until the limit
    refused = attempt(client, "boss", PASSWORD)
    assert refused.status_code == 429
    assert "_auth_user_id" not in client.session
    assert "Too many failed logins" in refused.content.decode()


def test_the_admin_login_page_has_the_guard_too(client, admin_user):
    """Today's main guards only /accounts/login/ and the token endpoint: the admin login takes any number of tries."""
    for _ in range(LIMIT):
        admin_login(client, "boss", "wrong password")
    assert admin_login(client, "boss", PASSWORD).status_code == 429
    assert "_auth_user_id" not in client.session


def test_a_locked_out_token_request_gets_the_api_error_shape(client, api_client_user):
    for _ in range(LIMIT):
        token(client, "bridge", "wrong password")
    response = token(client, "bridge", PASSWORD)
    assert response.status_code == 429
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "locked_out"
    assert "Too many failed logins" in response.json()["error"]["message"]
    assert int(response["Retry-After"]) == 15 * 60


def test_a_locked_account_stays_locked_from_another_address(client, radiologist):
    for _ in range(LIMIT):
        login_page(client, "rad", "wrong password", REMOTE_ADDR="198.51.100.1")
    elsewhere = Client()
    assert login_page(elsewhere, "rad", PASSWORD, REMOTE_ADDR="198.51.100.2").status_code == 429
    assert token(elsewhere, "rad", PASSWORD, REMOTE_ADDR="198.51.100.3").status_code == 429
    assert "_auth_user_id" not in elsewhere.session


def test_an_address_guessing_many_accounts_is_locked_out(client, radiologist):
    for i in range(LIMIT):
        token(client, f"guess-{i}", "wrong password", REMOTE_ADDR="198.51.100.9")
    assert token(client, "rad", PASSWORD, REMOTE_ADDR="198.51.100.9").status_code == 429
    assert token(Client(), "rad", PASSWORD, REMOTE_ADDR="198.51.100.10").status_code == 200


def test_rotating_x_forwarded_for_from_an_untrusted_peer_does_not_bypass_the_guard(client, radiologist):
    """Different accounts, so only the address can lock; each try claims another forwarded address."""
    for i in range(LIMIT):
        token(client, f"guess-{i}", "wrong", REMOTE_ADDR="198.51.100.20", HTTP_X_FORWARDED_FOR=f"203.0.113.{i}")
    response = token(client, "rad", PASSWORD, REMOTE_ADDR="198.51.100.20", HTTP_X_FORWARDED_FOR="203.0.113.99")
    assert response.status_code == 429


def test_behind_a_trusted_proxy_the_forwarded_client_address_is_counted(client, radiologist, settings):
    settings.PORTAL_TRUSTED_PROXIES = ["10.0.0.0/8"]
    proxy = {"REMOTE_ADDR": "10.1.2.3"}
    for i in range(LIMIT):
        token(client, f"guess-{i}", "wrong", HTTP_X_FORWARDED_FOR="203.0.113.7", **proxy)
    assert token(client, "rad", PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.7", **proxy).status_code == 429
    # another client behind the same proxy is not locked out with the first
    assert token(client, "rad", PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.8", **proxy).status_code == 200


def test_the_client_address_is_the_right_most_forwarded_entry_that_is_not_a_trusted_proxy(settings):
    from portal.net import client_ip

    settings.PORTAL_TRUSTED_PROXIES = ["10.0.0.0/8", "2001:db8::/32"]
    factory = RequestFactory()

    def ip(remote: str, forwarded: str | None = None) -> str | None:
        meta = {"REMOTE_ADDR": remote}
        if forwarded is not None:
            meta["HTTP_X_FORWARDED_FOR"] = forwarded
        return client_ip(factory.get("/", **meta))

    assert ip("198.51.100.1", "203.0.113.5") == "198.51.100.1"  # an untrusted peer's header is ignored
    assert ip("10.0.0.1", "6.6.6.6, 203.0.113.5") == "203.0.113.5"  # the client wrote the left part
    assert ip("10.0.0.1", "6.6.6.6, 203.0.113.5, 10.0.0.2") == "203.0.113.5"  # two proxies
    assert ip("10.0.0.1", "203.0.113.5:4711") == "203.0.113.5"
    assert ip("2001:db8::1", "[2001:db9::5]:443") == "2001:db9::5"
    assert ip("10.0.0.1", "not-an-address") == "10.0.0.1"
    assert ip("10.0.0.1") == "10.0.0.1"


def test_the_audit_trail_records_the_address_the_login_guard_counts(settings):
    settings.PORTAL_TRUSTED_PROXIES = ["10.0.0.0/8"]
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.5")
    assert client_ip(request) == "203.0.113.5"
    spoofed = RequestFactory().get("/", REMOTE_ADDR="198.51.100.1", HTTP_X_FORWARDED_FOR="203.0.113.5")
    assert client_ip(spoofed) == "198.51.100.1"


def test_a_bad_trusted_proxy_setting_stops_start_up(monkeypatch):
    from django.core.exceptions import ImproperlyConfigured

    from portal.env import env_networks

    monkeypatch.setenv("PORTAL_TRUSTED_PROXIES", "10.0.0.0/8, proxy.internal")
    with pytest.raises(ImproperlyConfigured, match="PORTAL_TRUSTED_PROXIES: 'proxy.internal'"):
        env_networks("PORTAL_TRUSTED_PROXIES")


# --- Content-Security-Policy and caching -------------------------------------------------------

INLINE_CODE = [
    (re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>", re.I), "an inline <script>"),
    (re.compile(r"<style\b", re.I), "a <style> element"),
    (re.compile(r"\sstyle=", re.I), "a style attribute"),
    (re.compile(r"\son[a-z]+=", re.I), "an inline event handler"),
]


def test_no_template_carries_inline_script_or_style():
    """The policy allows only the portal's own script and style files: inline code would be refused."""
    problems = []
    for path in sorted((ROOT / "templates").rglob("*.html")):
        text = path.read_text()
        for pattern, what in INLINE_CODE:
            if pattern.search(text):
                problems.append(f"{path.relative_to(ROOT)}: {what}")
    assert problems == []


def csp(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {part.split()[0]: part.split()[1:] for part in header.split(";") if part.strip()}


def test_every_page_sends_a_content_security_policy_for_the_portals_own_code_only(client, admin_user):
    client.force_login(admin_user)
    for url in ("/", reverse("upload"), reverse("models"), "/admin/", reverse("api-docs"), "/no-such-page/"):
        policy = csp(client.get(url))
        assert policy["default-src"] == ["'self'"], url
        # 'wasm-unsafe-eval' lets the viewer's DICOM codecs compile WebAssembly; it allows no JavaScript eval.
        assert policy["script-src"] == ["'self'", "'wasm-unsafe-eval'"], url
        assert policy.get("worker-src", ["'self'"]) == ["'self'"], url
        assert policy["style-src"] == ["'self'"], url
        assert policy["frame-ancestors"] == ["'none'"], url
        assert set(policy["img-src"]) == {"'self'", "data:", "blob:"}, url
    assert "Content-Security-Policy" in Client().get(reverse("login"))


def test_the_api_docs_load_their_start_up_code_as_a_script_file(client, radiologist):
    client.force_login(radiologist)
    page = client.get(reverse("api-docs")).content.decode()
    sources = re.findall(r'<script src="([^"]+)"', page)
    assert any("script" in src and src.startswith("/api/docs/") for src in sources)
    script = client.get(next(src for src in sources if src.startswith("/api/docs/")).replace("&amp;", "&"))
    assert script.status_code == 200 and script["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle" in script.content.decode()


def test_api_answers_with_patient_data_are_not_stored_by_caches(client, radiologist, rad_api, anon_api):
    image = ingest_file(file=io.BytesIO(to_bytes(mg_dataset())), filename="x.dcm").image
    for url in (
        "/api/v1/studies/",
        f"/api/v1/studies/{image.study_id}/",
        "/api/v1/images/",
        f"/api/v1/images/{image.pk}/",
        "/api/v1/patients/",
        "/api/v1/worklist/",
    ):
        response = rad_api.get(url)
        assert response.status_code == 200 and response["Cache-Control"] == "no-store", url
    assert anon_api.get("/api/v1/studies/")["Cache-Control"] == "no-store"  # errors too
    client.force_login(radiologist)
    for url in ("/", reverse("study-viewer", args=[image.study_id])):
        assert client.get(url)["Cache-Control"] == "no-store", url
    renditions.render_image(image.pk)  # what the render worker does after ingest
    rendition = rad_api.get(f"/api/v1/images/{image.pk}/rendition/")
    assert rendition.status_code == 200 and rendition["Cache-Control"].startswith("private")


# --- error pages, landing pages, favicon -------------------------------------------------------


def test_a_missing_page_is_a_styled_page_with_the_navigation_and_a_logout_form(client, radiologist, settings):
    settings.DEBUG = False
    client.force_login(radiologist)
    response = client.get("/studies/999999/")
    assert response.status_code == 404
    page = response.content.decode()
    assert "Page not found" in page and 'class="topbar"' in page
    assert re.search(r'<form method="post" action="/accounts/logout/"', page)
    assert "csrfmiddlewaretoken" in page
    assert "URLconf" not in page


def test_a_missing_api_address_answers_in_the_api_error_shape(rad_api):
    response = rad_api.get("/api/v1/no-such-thing/")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_a_server_error_is_a_styled_page_with_the_navigation(radiologist):
    from portal import views as portal_views

    assert get_resolver().resolve_error_handler(500) is portal_views.server_error
    client = Client(raise_request_exception=False)
    client.force_login(radiologist)
    with mock.patch("screening.reading.views.worklist_for", side_effect=RuntimeError("boom")):
        response = client.get("/")
    assert response.status_code == 500
    page = response.content.decode()
    assert "Something went wrong on the server" in page and 'action="/accounts/logout/"' in page
    assert "boom" not in page and "Traceback" not in page


def test_the_server_error_page_renders_even_when_the_navigation_cannot(radiologist):
    from portal import views as portal_views

    request = RequestFactory().get("/")
    request.user = radiologist
    with mock.patch("screening.accounts.context_processors.is_admin", side_effect=RuntimeError("database down")):
        response = portal_views.server_error(request)
    assert response.status_code == 500 and b"Something went wrong on the server" in response.content


def test_a_forbidden_page_says_where_the_account_may_go(client, api_client_user):
    client.force_login(api_client_user)
    response = client.get("/")
    assert response.status_code == 403
    page = response.content.decode()
    assert "not open to your account" in page and 'class="topbar"' in page
    assert f'href="{reverse("upload")}"' in page and f'href="{reverse("api-docs")}"' in page
    assert 'action="/accounts/logout/"' in page


@pytest.mark.parametrize("next_url", ["", "/"])
def test_an_api_client_logging_in_lands_on_a_page_it_may_open(client, api_client_user, next_url):
    data = {"username": "bridge", "password": PASSWORD}
    if next_url:
        data["next"] = next_url
    response = client.post(reverse("login"), data, follow=True)
    assert response.status_code == 200
    assert response.redirect_chain[-1][0] == reverse("upload")


def test_a_radiologist_logging_in_lands_on_the_worklist(client, radiologist):
    response = client.post(reverse("login"), {"username": "rad", "password": PASSWORD}, follow=True)
    assert response.status_code == 200 and response.redirect_chain[-1][0] == reverse("worklist")


def test_there_is_a_favicon(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 302
    target = response["Location"]
    assert target.startswith("/static/")
    assert finders.find(target.removeprefix("/static/"))
    assert 'rel="icon"' in Client().get(reverse("login")).content.decode()


def test_logging_out_clears_what_the_viewer_kept_in_the_browser(client, radiologist):
    """The next-case prefetch keeps DICOM instances in Cache Storage: logging out tells the browser to drop it."""
    client.force_login(radiologist)
    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert response["Clear-Site-Data"] == '"cache", "storage"'
    assert client.get(reverse("worklist")).status_code == 302  # logged out
