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


def test_the_readme_names_every_environment_variable_the_portal_and_run_sh_read():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    python = "".join((root / "portal" / name).read_text() for name in ("settings.py", "env.py", "wsgi.py"))
    shell = "".join((root / "scripts" / name).read_text() for name in ("run.sh", "venv.sh", "build_viewer.sh"))
    read = set(re.findall(r'"((?:PORTAL|DJANGO|CELERY|REDIS|DATABASE)_[A-Z0-9_]+)"', python))
    read |= set(re.findall(r"\$\{([A-Z_]+):-", shell))
    read -= {"DJANGO_SETTINGS_MODULE"}  # Django's own, set by manage.py and wsgi.py
    missing = sorted(name for name in read if f"`{name}" not in readme)
    assert not missing, f"name these in the README (Two commands or Settings): {missing}"
