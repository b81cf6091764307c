"""The README's Python client example runs as written against a live server."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from rest_framework.authtoken.models import Token

from portal.celery import app
from tests.dicom_factory import mg_dataset, to_bytes

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_readme_client_uploads_waits_and_prints_exam_scores(
    live_server, champion, api_client_user, tmp_path, monkeypatch, capsys
):
    code = re.search(r"```python\n(import pathlib.*?)```", README.read_text(), re.S).group(1)
    token = Token.objects.create(user=api_client_user).key
    code = code.replace('"http://127.0.0.1:8000"', repr(live_server.url)).replace('"<your api token>"', repr(token))
    folder = tmp_path / "mammograms"
    folder.mkdir()
    study_uid = "1.2.826.0.1.3680043.99.1"
    for seed, (side, view) in enumerate([("L", "CC"), ("L", "MLO"), ("R", "CC"), ("R", "MLO")]):
        (folder / f"{side}{view}.dcm").write_bytes(
            to_bytes(mg_dataset(laterality=side, view=view, study_uid=study_uid, seed=seed))
        )
    (folder / "ct.dcm").write_bytes(to_bytes(mg_dataset(modality="CT", sop_class="1.2.840.10008.5.1.4.1.1.2")))
    monkeypatch.chdir(tmp_path)
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True  # predictions in-process, in the server thread
    try:
        exec(compile(code, "README.md", "exec"), {})
    finally:
        app.conf.task_always_eager = eager
    out = capsys.readouterr().out
    assert "ct.dcm rejected: CT is not a mammography modality (expected MG)" in out
    assert re.search(r"study \d+: exam score 0\.\d{3} \((above|below) the operating point 0\.500\)", out), out
