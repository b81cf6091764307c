"""The Models page's "register an external model" form in a real Chromium (issue 20): a manifest that is not
one is refused on the page with its reason and leaves nothing; a readable one queues a checking run."""

from __future__ import annotations

import json

import pytest

from tests.browser.conftest import log_in
from tests.portal import test_training

fast_training = test_training.fast_training  # the training tests' fixture: small runs, a model folder in tmp

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


def test_an_onnx_model_is_registered_checked_scored_and_promoted_on_the_page(
    live_server, page, admin_user, radiologist, champion, fast_training, test_checkpoint, tmp_path
) -> None:
    """End to end in the browser: the shipped procedure's model exported to ONNX, registered on the Models page,
    checked and scored on the locked women by the training worker's task, then promoted by the admin's click."""
    from ml.external import export_onnx
    from screening.ai.services import training_run
    from screening.models import ModelVersion, TrainingRun
    from tests.portal.test_training import add_woman

    for n in range(12):
        add_woman(n, abnormal=n % 2 == 1, radiologist=radiologist)
    export_onnx(test_checkpoint, tmp_path, name="model")
    form = _open_form(page, live_server.url, admin_user.username)
    form.locator("input[name=manifest]").set_input_files(str(tmp_path / "model.json"))
    form.locator("input[name=model]").set_input_files(str(tmp_path / "model.onnx"))
    form.locator("input[name=name]").fill("vendor-onnx")
    form.get_by_role("button", name="Check, register and challenge").click()
    page.wait_for_selector(".messages")
    run = TrainingRun.objects.filter(triggered_by="external").order_by("-pk").first()
    assert run is not None, page.locator(".messages").inner_text()
    if run.status not in ("succeeded", "failed"):  # queued for the training worker: its task body, here
        training_run.run_training(run.pk, trigger="external")
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    candidate = ModelVersion.objects.get(name="vendor-onnx")
    assert candidate.metrics["locked_validation"]["n"] > 0  # scored on the locked women beside the champion
    page.goto(f"{live_server.url}/models/")
    row = page.locator("tr", has=page.locator("b", has_text="vendor-onnx"))
    assert "n=" in row.inner_text()  # its locked-set AUC with its number of images
    page.on("dialog", lambda dialog: dialog.accept())

    def promote_on_page(name: str) -> None:
        row = page.locator("tr", has=page.locator("b", has_text=name))
        with page.expect_navigation():
            row.get_by_role("button", name="promote").click()

    if candidate.status == "champion":  # the gate promoted it (the same model as the champion): roll back by click
        promote_on_page("test-model")
        assert ModelVersion.objects.get(name="test-model").status == "champion"
    promote_on_page("vendor-onnx")
    candidate.refresh_from_db()
    assert candidate.status == "champion"
    page.goto(f"{live_server.url}/models/")
    champion_row = page.locator("tr", has=page.locator("b", has_text="vendor-onnx"))
    assert "Champion" in champion_row.inner_text()
