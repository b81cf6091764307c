"""An external model (ONNX or TorchScript with a manifest) registered, checked, challenged and served (issue 20)."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from ml.external import export_onnx
from screening.ai.services import training_run
from screening.models import AuditEvent, ModelVersion, TrainingRun
from tests.conftest import _token_client
from tests.portal import test_training
from tests.portal.test_training import add_woman

fast_training = test_training.fast_training  # the training tests' fixture: small runs, a model folder in tmp

pytestmark = pytest.mark.django_db
URL = "/api/v1/models/external/"


@pytest.fixture
def admin_api(admin_user):
    return _token_client(admin_user)


@pytest.fixture
def readings(radiologist):
    return [add_woman(n, abnormal=n % 2 == 1, radiologist=radiologist) for n in range(12)]


def _files(folder):
    manifest = json.loads((folder / "model.json").read_text())
    return {
        "manifest": SimpleUploadedFile("model.json", (folder / "model.json").read_bytes()),
        "model": SimpleUploadedFile("model.onnx", (folder / manifest["file"]).read_bytes()),
    }


def test_the_champion_exported_to_onnx_is_registered_and_challenged_through_the_api(
    champion, readings, fast_training, admin_api, test_checkpoint, tmp_path
):
    export_onnx(test_checkpoint, tmp_path, name="model")
    response = admin_api.post(URL, {**_files(tmp_path), "name": "onnx-copy"}, format="multipart")
    assert response.status_code == 202, response.content
    assert training_run.run_training(response.json()["id"], trigger="external")  # the training worker's task body
    run = TrainingRun.objects.get(pk=response.json()["id"])
    assert run.triggered_by == "external" and run.status == "succeeded", run.error
    candidate = ModelVersion.objects.get(name="onnx-copy")
    assert run.candidate_id == candidate.pk and candidate.checkpoint.endswith("model.json")
    assert candidate.metrics["external"]["format"] == "onnx"
    # Scored beside the champion on the same locked women: the same model gives the same scores (the champion's
    # come from the fp32 feature cache, the export from its fp16 weights: about 1e-3 apart; ml's test: 1e-4).
    ours = ModelVersion.objects.get(pk=champion.pk).metrics["locked_validation"]
    theirs = candidate.metrics["locked_validation"]
    assert theirs["n"] == ours["n"] > 0
    assert [row[0] for row in theirs["scores"]] == [row[0] for row in ours["scores"]]  # labels, in the same order
    assert [row[1] for row in theirs["scores"]] == pytest.approx([row[1] for row in ours["scores"]], abs=2e-3)
    assert candidate.status in ("champion", "rejected")  # the same rule as a nightly candidate decided
    assert AuditEvent.objects.filter(action="model_upload").count() == 1


def test_a_manifest_that_is_not_one_is_refused_at_once_and_leaves_nothing(champion, admin_api, fast_training):
    files = {
        "manifest": SimpleUploadedFile("model.json", b"{not json"),
        "model": SimpleUploadedFile("model.onnx", b"\x08\x01"),
    }
    response = admin_api.post(URL, files, format="multipart")
    assert response.status_code == 400
    assert "not JSON" in json.dumps(response.json())
    assert not TrainingRun.objects.exists()
    assert not (fast_training.PORTAL_MODEL_DIR / "external").exists() or not any(
        (fast_training.PORTAL_MODEL_DIR / "external").iterdir()
    )


def test_a_file_that_is_not_a_model_fails_its_run_with_the_reason_and_registers_nothing(
    champion, readings, admin_api, fast_training
):
    manifest = {
        "format": "onnx",
        "file": "x.onnx",
        "input": {"height": 256, "width": 160},
        "outputs": {"image_logit": 0},
    }
    files = {
        "manifest": SimpleUploadedFile("model.json", json.dumps(manifest).encode()),
        "model": SimpleUploadedFile("model.onnx", b"this is not a model"),
    }
    before = set(ModelVersion.objects.values_list("pk", flat=True))
    response = admin_api.post(URL, files, format="multipart")
    training_run.run_training(response.json()["id"], trigger="external")  # the training worker's task body
    run = TrainingRun.objects.get(pk=response.json()["id"])
    assert run.status == "failed" and "not a loadable onnx model" in run.error
    assert set(ModelVersion.objects.values_list("pk", flat=True)) == before  # no version registered
    assert not any((fast_training.PORTAL_MODEL_DIR / "external").iterdir())


def test_only_admins_register_models(champion, rad_api, api, client, radiologist):
    assert rad_api.post(URL, {}, format="multipart").status_code == 403
    assert api.post(URL, {}, format="multipart").status_code == 403
    client.force_login(radiologist)
    assert client.post(reverse("models-external")).status_code == 403
