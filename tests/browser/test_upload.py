"""The upload page in a real Chromium: several files at once, a bar and a verdict per file, the AI result arriving."""

from __future__ import annotations

import pytest

from portal.celery import app
from screening.models import Image
from tests.browser.conftest import log_in
from tests.dicom_factory import mg_dataset, to_bytes

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def test_several_files_upload_with_a_reason_for_each_rejection(live_server, page, radiologist, champion, tmp_path):
    from django.db import connection

    if connection.vendor == "sqlite":
        pytest.skip("parallel uploads need a server database: the test's in-memory SQLite locks whole tables")
    good = tmp_path / "left-cc.dcm"
    good.write_bytes(to_bytes(mg_dataset(laterality="L", view="CC", patient_id="UP-1")))
    ct = tmp_path / "head-ct.dcm"
    ct.write_bytes(to_bytes(mg_dataset(modality="CT", sop_class="1.2.840.10008.5.1.4.1.1.2")))
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True  # the prediction runs in the server thread after the upload commits
    try:
        log_in(page, live_server.url, radiologist.username, "/upload/")
        page.set_input_files("#file-input", [str(good), str(ct), str(notes)])
        items = page.locator(".upload-item")
        page.wait_for_function("() => document.querySelectorAll('.upload-item.ok, .upload-item.rejected').length === 3")
        texts = {items.nth(i).locator(".name").inner_text(): items.nth(i).inner_text() for i in range(3)}
        assert "accepted" in texts["left-cc.dcm"]
        assert "rejected: CT is not a mammography modality (expected MG)" in texts["head-ct.dcm"]
        assert "rejected: not a DICOM file and not a supported image" in texts["notes.txt"]
        assert page.locator(".upload-item.ok progress").get_attribute("value") == "100"
        page.wait_for_function(
            "() => [...document.querySelectorAll('.upload-item .ai')].some(e => /AI probability/.test(e.textContent))"
        )
    finally:
        app.conf.task_always_eager = eager
    assert Image.objects.count() == 1
