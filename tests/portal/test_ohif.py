"""The OHIF viewer's pages and files at /ohif/ (screening/exchange/ohif.py), on a stand-in of OHIF's build: readers
only, the stock page without its inline scripts, the portal's own app-config, its files, nothing outside its
folder, and the case page's link to it only where it is installed. In a real Chromium: tests/browser/test_ohif.py."""

from __future__ import annotations

import pytest
from django.test import Client

from screening.models import Study

pytestmark = pytest.mark.django_db

STOCK_INDEX = (
    '<!doctype html><html><head><script>console.time("scriptToView"),window.PUBLIC_URL="/"</script>'
    '<link rel="manifest" href="/manifest.json"><script rel="preload" as="script" src="/app-config.js"></script>'
    '<script rel="preload" as="script" type="module" src="/init-service-worker.js"></script>'
    '<script>function browserImportFunction(n){return import(n)}window.PUBLIC_URL="/"</script>'
    '<script defer src="/app.bundle.0f6159c501addfe9.js"></script><link href="/app.bundle.css" rel="stylesheet">'
    '</head><body><div id="root"></div></body></html>'
)


@pytest.fixture
def ohif(settings, tmp_path):
    """A folder shaped like build_ohif.sh's vendor/ohif."""
    folder = tmp_path / "ohif"
    folder.mkdir()
    (folder / "index.html").write_text(STOCK_INDEX)
    (folder / "app.bundle.0f6159c501addfe9.js").write_text("console.log('ohif');")
    (folder / "5130ccb17e3f3f5b.wasm").write_bytes(b"\0asm\1\0\0\0")
    (tmp_path / "secret.txt").write_text("outside")
    settings.PORTAL_OHIF_DIR = folder
    return folder


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_reader_gets_the_stock_page_under_ohif_without_its_inline_scripts(ohif, radiologist):
    response = logged_in(radiologist).get("/ohif/")
    html = response.content.decode()
    assert response.status_code == 200 and response["Content-Type"].startswith("text/html")
    assert "<script>" not in html and "init-service-worker" not in html
    assert '<script defer src="/ohif/app.bundle.0f6159c501addfe9.js">' in html
    assert 'src="/ohif/app-config.js"' in html and 'href="/ohif/app.bundle.css"' in html
    policy = response["Content-Security-Policy"]
    assert "style-src 'self' 'unsafe-inline'" in policy and "worker-src 'self' blob:" in policy
    assert "'unsafe-eval'" not in policy and "script-src 'self' 'wasm-unsafe-eval'" in policy


def test_the_rest_of_the_portal_keeps_its_stricter_policy(ohif, radiologist):
    policy = logged_in(radiologist).get("/")["Content-Security-Policy"]
    assert "'unsafe-inline'" not in policy and "blob:" not in policy.split("worker-src")[1].split(";")[0]


def test_an_app_route_answers_the_page_and_a_missing_file_is_404(ohif, radiologist):
    client = logged_in(radiologist)
    assert b'id="root"' in client.get("/ohif/viewer", {"StudyInstanceUIDs": "1.2.3"}).content
    assert client.get("/ohif/no-such-chunk.js").status_code == 404


def test_the_app_config_points_ohif_at_the_portals_dicomweb(ohif, radiologist):
    response = logged_in(radiologist).get("/ohif/app-config.js")
    body = response.content.decode()
    assert response.status_code == 200 and response["Content-Type"].startswith("text/javascript")
    assert 'qidoRoot: "http://testserver/dicomweb"' in body and 'wadoRoot: "http://testserver/dicomweb"' in body
    assert 'window.PUBLIC_URL = "/ohif/"' in body and "https://" not in body


def test_files_are_served_with_their_types_and_hashed_ones_are_cached(ohif, radiologist):
    client = logged_in(radiologist)
    bundle = client.get("/ohif/app.bundle.0f6159c501addfe9.js")
    assert bundle.status_code == 200 and b"".join(bundle.streaming_content) == b"console.log('ohif');"
    assert "immutable" in bundle["Cache-Control"]
    assert client.get("/ohif/5130ccb17e3f3f5b.wasm")["Content-Type"] == "application/wasm"
    assert client.head("/ohif/app.bundle.0f6159c501addfe9.js").status_code == 200


def test_a_browser_that_takes_gzip_gets_the_gzip_copy(ohif, radiologist):
    import gzip

    (ohif / "app.bundle.0f6159c501addfe9.js.gz").write_bytes(gzip.compress(b"console.log('ohif');"))
    client = logged_in(radiologist)
    packed = client.get("/ohif/app.bundle.0f6159c501addfe9.js", HTTP_ACCEPT_ENCODING="gzip, br")
    assert packed["Content-Encoding"] == "gzip" and packed["Content-Type"].startswith("text/javascript")
    assert gzip.decompress(b"".join(packed.streaming_content)) == b"console.log('ohif');"
    plain = client.get("/ohif/app.bundle.0f6159c501addfe9.js", HTTP_ACCEPT_ENCODING="identity")
    assert not plain.has_header("Content-Encoding") and "Accept-Encoding" in plain["Vary"]


def test_nothing_outside_ohifs_folder_is_served(ohif, radiologist):
    client = logged_in(radiologist)
    for path in ("/ohif/../secret.txt", "/ohif/%2e%2e/secret.txt", "/ohif/..%2fsecret.txt"):
        response = client.get(path)
        assert response.status_code == 404 or b"outside" not in response.content


@pytest.mark.parametrize("who", ["api_client_user", "outsider"])
def test_only_readers_open_ohif(ohif, request, who):
    client = logged_in(request.getfixturevalue(who))
    assert client.get("/ohif/").status_code == 403
    assert client.get("/ohif/app.bundle.0f6159c501addfe9.js").status_code == 403


def test_anonymous_goes_to_the_login(ohif):
    response = Client().get("/ohif/app-config.js")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_without_ohif_installed_its_page_says_so_with_a_404(settings, tmp_path, radiologist):
    settings.PORTAL_OHIF_DIR = tmp_path / "missing"
    response = logged_in(radiologist).get("/ohif/")
    assert response.status_code == 404


def _case(radiologist) -> Study:
    import io

    from screening.intake.services.ingest import ingest_file
    from tests.dicom_factory import mg_dataset, to_bytes

    return ingest_file(file=io.BytesIO(to_bytes(mg_dataset(seed=4))), user=radiologist).image.study


def test_the_case_page_links_to_the_study_in_ohif_where_it_is_installed(ohif, settings, tmp_path, radiologist):
    study = _case(radiologist)
    client = logged_in(radiologist)
    page = client.get(f"/studies/{study.pk}/").content.decode()
    assert f'href="/ohif/viewer?StudyInstanceUIDs={study.study_uid}"' in page and 'id="ohif-link"' in page
    settings.PORTAL_OHIF_DIR = tmp_path / "missing"
    assert 'id="ohif-link"' not in client.get(f"/studies/{study.pk}/").content.decode()
