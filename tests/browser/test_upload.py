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


# Issue 21: sends are held until the test releases them, so files queue behind the two that run.
HOLD_SENDS = """
window.__held = [];
const send = XMLHttpRequest.prototype.send;
XMLHttpRequest.prototype.send = function (body) { window.__held.push(() => send.call(this, body)); };
window.__release = () => { const held = window.__held; window.__held = []; held.forEach((go) => go()); };
"""


def test_each_file_keeps_the_patient_side_and_view_it_was_added_with(live_server, page, radiologist, tmp_path):
    """Files added for one woman, then the fields changed for the next: every file is stored as it was added,
    and the page shows per file what it applied (and what the portal stored)."""
    from django.db import connection

    from tests.uploads import png_bytes

    if connection.vendor == "sqlite":
        pytest.skip("parallel uploads need a server database: the test's in-memory SQLite locks whole tables")
    import numpy as np

    files = []
    for i in range(4):
        path = tmp_path / f"picture-{i}.png"
        path.write_bytes(png_bytes(np.random.default_rng(i).integers(0, 255, (64, 48), dtype=np.uint8)))
        files.append(str(path))
    page.add_init_script(HOLD_SENDS)
    log_in(page, live_server.url, radiologist.username, "/upload/")
    page.fill("input[name=patient_id]", "WOMAN-A")
    page.select_option("select[name=laterality]", "L")
    page.select_option("select[name=view]", "CC")
    page.set_input_files("#file-input", files[:3])  # two start, the third waits in the queue
    page.fill("input[name=patient_id]", "WOMAN-B")
    page.select_option("select[name=laterality]", "R")
    page.select_option("select[name=view]", "MLO")
    page.set_input_files("#file-input", files[3:])
    items = page.locator(".upload-item")
    applied = [items.nth(i).locator(".applied").inner_text() for i in range(4)]
    assert applied == ["for patient WOMAN-A, left, CC"] * 3 + ["for patient WOMAN-B, right, MLO"], applied
    # Release the sends as they come (the queued ones are sent as earlier ones finish).
    page.wait_for_function(
        "() => { window.__release(); return document.querySelectorAll('.upload-item.ok, .upload-item.rejected')"
        ".length === 4; }",
        polling=100,
    )
    texts = [items.nth(i).inner_text() for i in range(4)]
    assert all("accepted" in t for t in texts), texts
    assert "stored as L CC" in texts[2] and "stored as R MLO" in texts[3], texts
    stored = sorted(
        (i.study.patient.patient_id, i.laterality, i.view) for i in Image.objects.select_related("study__patient")
    )
    assert stored == [("WOMAN-A", "L", "CC")] * 3 + [("WOMAN-B", "R", "MLO")], stored
