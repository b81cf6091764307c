"""The Models page's "register an external model" form in a real Chromium (issue 20): a manifest that is not
one is refused on the page with its reason and leaves nothing; a readable one queues a checking run."""

from __future__ import annotations

import json

import pytest

from tests.browser.conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def _open_form(page, base_url: str, username: str):
    log_in(page, base_url, username, "/models/")
    page.locator("#external-model summary").click()
    form = page.locator("#external-model form")
    assert form.is_visible()
    return form


def test_a_manifest_that_is_not_json_is_refused_on_the_page_and_registers_nothing(
    live_server, page, admin_user, tmp_path
) -> None:
    from screening.models import ModelVersion, TrainingRun

    versions, runs = ModelVersion.objects.count(), TrainingRun.objects.count()
    manifest, model = tmp_path / "model.json", tmp_path / "model.onnx"
    manifest.write_text("this is not json")
    model.write_bytes(b"\x08\x01")
    form = _open_form(page, live_server.url, admin_user.username)
    form.locator("input[name=manifest]").set_input_files(str(manifest))
    form.locator("input[name=model]").set_input_files(str(model))
    form.get_by_role("button", name="Check, register and challenge").click()
    page.wait_for_selector(".messages")
    text = page.locator(".messages").inner_text().lower()
    assert "manifest" in text and "json" in text
    assert (ModelVersion.objects.count(), TrainingRun.objects.count()) == (versions, runs)


def test_a_readable_manifest_queues_a_checking_run_shown_on_the_page(live_server, page, admin_user, tmp_path) -> None:
    from screening.models import TrainingRun

    manifest, model = tmp_path / "model.json", tmp_path / "model.onnx"
    manifest.write_text(
        json.dumps(
            {
                "format": "onnx",
                "file": "model.onnx",
                "input": {"height": 64, "width": 48},
                "outputs": {"patch_logits": 0},
                "threshold": 0.5,
            }
        )
    )
    model.write_bytes(b"\x08\x01")  # checked by the run, not by the form
    form = _open_form(page, live_server.url, admin_user.username)
    form.locator("input[name=manifest]").set_input_files(str(manifest))
    form.locator("input[name=model]").set_input_files(str(model))
    form.get_by_role("button", name="Check, register and challenge").click()
    page.wait_for_selector(".messages")
    run = TrainingRun.objects.filter(triggered_by="external").order_by("-pk").first()
    if run is None:  # the manifest schema refused it at once: the message says why
        pytest.fail(page.locator(".messages").inner_text())
    assert f"Run #{run.pk}" in page.locator(".messages").inner_text()
