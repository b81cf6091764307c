"""What a new user meets first: HEAD and GET answer sensibly where a person or a monitor tries them."""

from __future__ import annotations

import io

import pytest
from django.urls import reverse

from screening.intake.services.ingest import ingest_file
from screening.models import AuditEvent, CaseLock
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


@pytest.mark.parametrize(("version", "supported"), [("18.19.0", False), ("21.7.3", False), ("20.19.0", True)])
def test_the_viewer_build_names_the_node_version_it_needs_before_installing(tmp_path, version, supported):
    import os
    import shutil
    import subprocess
    from pathlib import Path

    real_node = shutil.which("node")
    if real_node is None:
        pytest.skip("Node.js is not installed")
    root = Path(__file__).resolve().parents[2]
    repo = tmp_path / "repo"  # a copy: nothing of the real checkout (node_modules, dist) is touched
    for name in ("scripts/build_viewer.sh", "package.json", "package-lock.json", "static/viewer/vite.config.js"):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / name, repo / name)
    shutil.copytree(root / "static/viewer/src", repo / "static/viewer/src")
    fake = tmp_path / "bin"
    fake.mkdir()
    # node answers as the given version; npm and npx only say they were called (and stop the script).
    (fake / "node").write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "-p" ]; then echo {version}; exit 0; fi\n'
        f'exec {real_node} -e "$(printf \'%s\' "$2" | sed "s/process.versions.node/\'{version}\'/")"\n'
    )
    for tool in ("npm", "npx"):
        (fake / tool).write_text(f"#!/bin/sh\ntouch {tmp_path}/{tool}-called\nexit 1\n")
    for tool in fake.iterdir():
        tool.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "FORCE": "1"}
    run = subprocess.run(["bash", str(repo / "scripts/build_viewer.sh")], env=env, capture_output=True, text=True)
    installed = (tmp_path / "npm-called").exists() or (tmp_path / "npx-called").exists()
    if supported:
        assert installed and "too old" not in run.stderr
    else:
        assert run.returncode == 1 and not installed
        assert f"Node.js {version} is too old to build the viewer: Vite 8 needs 20.19+ or 22.12+" in run.stderr
