"""No stuck or endless work: one-way imports, failed (never stuck) predictions, unservable checkpoints,
one model version per exam, and always a champion."""

from __future__ import annotations

import ast
import io
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import yaml
from django.utils import timezone

from screening.ai import inference
from screening.ai.services import predicting, predictions, registry
from screening.ai.services.checkpoints import describe_checkpoint, register_checkpoint
from screening.ai.services.predictions import sweep
from screening.ai.services.registry import baseline_fields, promote_version
from screening.intake.services.ingest import ingest_file
from screening.models import AuditEvent, Image, ModelVersion, Prediction, Study
from tests.conftest import stored_files
from tests.dicom_factory import mg_dataset, to_bytes
from tests.eager import tasks_in_process
from tests.predictors import OneByOne

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db


def ingest(ds, **kwargs) -> Image:
    return ingest_file(file=io.BytesIO(to_bytes(ds)), filename="x.dcm", **kwargs).image


@pytest.fixture
def eager():
    """Embedded mode: tasks run in this process (no broker, no sweeper); counts predict_image runs per id."""
    with tasks_in_process("screening.tasks.predict_image") as runs:
        yield runs


class FakePredictor(OneByOne):
    """Stands in for a model that answers with the given probability, heatmap value and timing."""

    def __init__(self, probability=0.4, heat=0.5, inference_ms=1.0):
        self.probability, self.heat, self.inference_ms = probability, heat, inference_ms

    def predict(self, items, batch_size=8):
        from ml.inference import PredictionResult

        return [
            PredictionResult(
                probability=self.probability,
                heatmap=np.full(image.shape, self.heat, np.float32),
                logit=0.0,
                preprocess_ms=1.0,
                inference_ms=self.inference_ms,
            )
            for image, *_ in items  # the loader gives (pixels, laterality, source kind)
        ]


@pytest.fixture
def model_answers(monkeypatch, champion):
    """Load a FakePredictor as the champion's model in this process."""

    def use(**kwargs):
        monkeypatch.setattr(inference, "_loaded", (champion.pk, FakePredictor(**kwargs)))

    return use


def heatmaps(media_root) -> list[str]:
    return [name for name in stored_files(media_root) if name.startswith("heatmaps")]


# --- imports flow one way: services -> dispatch, tasks -> services --------------------------------------


def _imports(path: Path) -> list[tuple[ast.AST, str]]:
    """(node, module) for every import in a file, relative imports resolved against screening/."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            names = [base] + [f"{base}.{alias.name}".strip(".") for alias in node.names]
            found += [(node, name) for name in names]
        elif isinstance(node, ast.Import):
            found += [(node, alias.name) for alias in node.names]
    return found


def test_no_service_module_imports_the_tasks():
    offenders = [
        f"{path.name}:{node.lineno}"
        for path in sorted((ROOT / "screening" / "services").glob("*.py"))
        for node, name in _imports(path)
        if name == "tasks" or name.endswith(".tasks") or name.startswith("tasks")
    ]
    assert offenders == []


def test_tasks_import_services_at_module_top_not_inside_functions():
    tree = ast.parse((ROOT / "screening" / "tasks.py").read_text())
    inner = [
        node.lineno
        for func in ast.walk(tree)
        if isinstance(func, ast.FunctionDef)
        for node in ast.walk(func)
        if isinstance(node, ast.Import | ast.ImportFrom)
    ]
    assert inner == []


def test_importing_every_service_leaves_the_tasks_unimported():
    code = (
        "import django, pkgutil, importlib, sys; django.setup();"
        "import screening;"
        "[importlib.import_module(m.name) for m in pkgutil.walk_packages(screening.__path__, 'screening.')"
        " if '.services' in m.name];"
        "print('screening.tasks' in sys.modules, 'torch' in sys.modules)"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]


# --- a NaN is a failed prediction, never a stuck one; files never outlive their rows -----------------------


def test_a_nan_probability_fails_the_prediction_with_its_reason_and_leaves_no_heatmap(model_answers, media_root):
    model_answers(probability=float("nan"))
    image = ingest(mg_dataset())
    prediction = Prediction.objects.get(image=image)
    assert predicting.run_prediction(prediction.pk) == 0
    prediction.refresh_from_db()
    assert prediction.status == "failed" and "invalid probability (nan)" in prediction.error
    assert Image.objects.get(pk=image.pk).status == "failed"
    assert Study.objects.get(pk=image.study_id).status == "predicted"
    assert heatmaps(media_root) == []


@pytest.mark.parametrize("probability", [float("inf"), -0.5, 1.5])
def test_an_out_of_range_probability_fails_the_prediction(model_answers, probability):
    model_answers(probability=probability)
    prediction = Prediction.objects.get(image=ingest(mg_dataset()))
    predicting.run_prediction(prediction.pk)
    prediction.refresh_from_db()
    assert prediction.status == "failed" and "invalid probability" in prediction.error


def test_a_heatmap_with_non_finite_values_fails_the_prediction_and_is_not_stored(model_answers, media_root):
    model_answers(heat=float("inf"))
    prediction = Prediction.objects.get(image=ingest(mg_dataset()))
    predicting.run_prediction(prediction.pk)
    prediction.refresh_from_db()
    assert prediction.status == "failed" and "heatmap" in prediction.error
    assert heatmaps(media_root) == []


def test_in_embedded_mode_a_nan_prediction_ends_failed_with_no_sweeper(
    model_answers, eager, django_capture_on_commit_callbacks
):
    model_answers(probability=float("nan"))
    with django_capture_on_commit_callbacks(execute=True):
        image = ingest(mg_dataset())
    prediction = Prediction.objects.get(image=image)
    assert prediction.status == "failed" and prediction.error
    assert Study.objects.get(pk=image.study_id).status == "predicted"


def test_a_result_the_database_refuses_leaves_no_heatmap_and_fails_at_the_attempt_limit(
    model_answers, media_root, settings
):
    model_answers(inference_ms="not a number")  # the heatmap file is saved before the row is refused
    prediction = Prediction.objects.get(image=ingest(mg_dataset()))
    for attempt in range(1, settings.PORTAL_PREDICTION_MAX_ATTEMPTS):
        with pytest.raises(predicting.TryAgain):
            predicting.run_prediction(prediction.pk)
        prediction.refresh_from_db()
        assert (prediction.status, prediction.attempts) == ("queued", attempt)
        assert heatmaps(media_root) == []
    assert predicting.run_prediction(prediction.pk) == 0
    prediction.refresh_from_db()
    limit = settings.PORTAL_PREDICTION_MAX_ATTEMPTS
    assert prediction.status == "failed" and prediction.error.startswith(f"gave up after {limit} attempts")
    assert heatmaps(media_root) == []


def test_a_failed_prediction_loses_its_heatmap_file(champion, media_root, django_capture_on_commit_callbacks):
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    image = ingest(mg_dataset())
    name = default_storage.save("heatmaps/ab/orphan.png", ContentFile(b"png"))
    Prediction.objects.filter(image=image).update(status="running", heatmap=name, attempts=1)
    with django_capture_on_commit_callbacks(execute=True):
        predictions.fail_prediction(Prediction.objects.get(image=image).pk, "timed out after 300 s")
    assert Prediction.objects.get(image=image).heatmap.name == ""
    assert heatmaps(media_root) == []


# --- a checkpoint that cannot be loaded ------------------------------------------------------------------


@pytest.fixture
def corrupt_champion(db, tmp_path):
    path = tmp_path / "corrupt.pt"
    path.write_bytes(b"this is not a checkpoint")
    return promote_version(ModelVersion.objects.create(name="corrupt", checkpoint=str(path), threshold=0.5))


def test_an_unloadable_champion_fails_its_predictions_once_and_is_marked_unservable(
    corrupt_champion, eager, settings, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        images = [ingest(mg_dataset(seed=i, patient_id=f"C{i}")) for i in range(3)]
    rows = list(Prediction.objects.filter(image__in=images))
    assert len(rows) == 3
    for row in rows:
        assert row.status == "failed" and "cannot be loaded" in row.error
        assert row.attempts <= settings.PORTAL_PREDICTION_MAX_ATTEMPTS
    assert max(eager.values()) <= settings.PORTAL_PREDICTION_MAX_ATTEMPTS
    assert sum(eager.values()) <= 3  # one task per prediction was published, none again
    version = ModelVersion.objects.get(pk=corrupt_champion.pk)
    assert version.servable is False and "cannot be loaded" in version.load_error
    assert AuditEvent.objects.filter(action="model_unservable", object_id=str(version.pk)).count() == 1
    assert {Study.objects.get(pk=i.study_id).status for i in images} == {"predicted"}

    with django_capture_on_commit_callbacks(execute=True):
        late = ingest(mg_dataset(seed=9, patient_id="C9"))
    assert not Prediction.objects.filter(image=late).exists()
    assert Image.objects.get(pk=late.pk).status == "received"


def test_a_missing_checkpoint_is_retried_a_few_times_then_fails_and_the_version_stays_servable(
    db, tmp_path, eager, settings, django_capture_on_commit_callbacks
):
    version = promote_version(
        ModelVersion.objects.create(name="not-synced", checkpoint=str(tmp_path / "later.pt"), threshold=0.5)
    )
    with django_capture_on_commit_callbacks(execute=True):
        image = ingest(mg_dataset())
    prediction = Prediction.objects.get(image=image)
    assert prediction.status == "failed" and "missing" in prediction.error
    assert prediction.attempts == settings.PORTAL_PREDICTION_MAX_ATTEMPTS
    assert eager[prediction.pk] == settings.PORTAL_PREDICTION_MAX_ATTEMPTS
    assert ModelVersion.objects.get(pk=version.pk).servable is True


def test_the_sweeper_fails_a_queued_prediction_that_reached_the_attempt_limit(champion, settings):
    prediction = Prediction.objects.get(image=ingest(mg_dataset()))
    Prediction.objects.filter(pk=prediction.pk).update(
        attempts=settings.PORTAL_PREDICTION_MAX_ATTEMPTS, updated=timezone.now() - timedelta(hours=1)
    )
    counts = sweep()
    assert counts["failed"] == 1 and counts["resent"] == 0
    prediction.refresh_from_db()
    assert prediction.status == "failed" and prediction.error.startswith("gave up after")


def test_the_registry_page_and_the_admin_show_an_unservable_champion(client, admin_user, corrupt_champion):
    ModelVersion.objects.filter(pk=corrupt_champion.pk).update(
        servable=False, load_error="the checkpoint of model corrupt cannot be loaded: EOFError"
    )
    client.force_login(admin_user)
    page = client.get("/models/").content.decode()
    assert "The champion corrupt cannot serve:" in page and "cannot be loaded: EOFError" in page
    admin_user.is_superuser = True
    admin_user.save()
    listing = client.get("/admin/screening/modelversion/").content.decode()
    assert "cannot be loaded: EOFError" in listing


def test_registering_a_repaired_checkpoint_makes_its_version_servable_again(corrupt_champion, test_checkpoint):
    registry.mark_unservable(corrupt_champion, "the checkpoint of model corrupt cannot be loaded: EOFError")
    Path(corrupt_champion.checkpoint).write_bytes(test_checkpoint.read_bytes())
    version = register_checkpoint(corrupt_champion.checkpoint, name="corrupt")
    assert (version.pk, version.servable, version.load_error) == (corrupt_champion.pk, True, "")
    assert AuditEvent.objects.filter(action="model_servable", object_id=str(version.pk)).count() == 1


# --- one model version per exam ----------------------------------------------------------------------------


def _second_version(test_checkpoint, tmp_path, name="second-model"):
    copy = tmp_path / f"{name}.pt"
    copy.write_bytes(test_checkpoint.read_bytes())
    return register_checkpoint(copy, name=name)


def test_a_study_is_scored_by_one_model_version_never_a_mix(champion, test_checkpoint, tmp_path):
    second = _second_version(test_checkpoint, tmp_path)
    study_uid = "1.2.826.0.1.7"
    views = {("R", "CC"): 0.8, ("R", "MLO"): 0.6, ("L", "CC"): 0.2, ("L", "MLO"): 0.4}
    images = {}
    for seed, (side, view) in enumerate(views):
        images[side, view] = ingest(mg_dataset(laterality=side, view=view, study_uid=study_uid, seed=seed))
    Prediction.objects.all().delete()
    for key, image in images.items():
        Prediction.objects.create(image=image, model_version=champion, status="done", probability=views[key])
        if key[0] == "L":  # the newer version has read the left breast only; the right one waits
            Prediction.objects.create(image=image, model_version=second, status="done", probability=0.9)
        else:
            Prediction.objects.create(image=image, model_version=second, status="queued")
    Image.objects.filter(study__study_uid=study_uid).update(status="queued")
    study = predictions.update_exam_scores(Study.objects.get(study_uid=study_uid))
    assert study.exam_model == champion
    assert (study.score_right, study.score_left) == (pytest.approx(0.7), pytest.approx(0.3))
    assert study.exam_score == pytest.approx(0.7)

    Prediction.objects.filter(model_version=second, status="queued").update(status="done", probability=0.1)
    study = predictions.update_exam_scores(study)
    assert study.exam_model == second
    assert (study.score_right, study.score_left, study.exam_score) == (
        pytest.approx(0.1),
        pytest.approx(0.9),
        pytest.approx(0.9),
    )


def test_an_image_added_to_a_study_read_by_an_older_model_has_the_whole_study_predicted_by_the_champion(
    champion, test_checkpoint, tmp_path
):
    study_uid = "1.2.826.0.1.8"
    right = [
        ingest(mg_dataset(laterality="R", view=v, study_uid=study_uid, seed=i)) for i, v in enumerate("CC MLO".split())
    ]
    predicting.run_prediction(Prediction.objects.get(image=right[0]).pk)  # a batch: both right views
    second = promote_version(_second_version(test_checkpoint, tmp_path))
    left = ingest(mg_dataset(laterality="L", view="CC", study_uid=study_uid, seed=5))
    queued = Prediction.objects.filter(model_version=second, status="queued")
    assert set(queued.values_list("image_id", flat=True)) == {left.pk, right[0].pk, right[1].pk}
    predicting.run_prediction(queued.first().pk)
    study = Study.objects.get(study_uid=study_uid)
    assert study.exam_model == second
    assert study.score_left is not None and study.score_right is not None


# --- there is always a champion ----------------------------------------------------------------------------


def test_migrate_alone_makes_the_shipped_baseline_the_champion_without_torch(tmp_path):
    code = (
        "import django, json, sys; django.setup();"
        "from django.core.management import call_command; call_command('migrate', verbosity=0);"
        "from screening.models import ModelVersion; v = ModelVersion.objects.get(status='champion');"
        "print(json.dumps([v.name, v.checkpoint, v.threshold, v.servable, 'torch' in sys.modules]))"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DATABASE_URL": "",
        "PORTAL_VAR_DIR": str(tmp_path),
    }
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    name, checkpoint, threshold, servable, torch_imported = json.loads(result.stdout.strip().splitlines()[-1])
    sidecar = baseline_fields()
    assert (name, checkpoint, threshold) == (sidecar["name"], "ml/weights/baseline.pt", sidecar["threshold"])
    assert servable is True and torch_imported is False
    assert (ROOT / checkpoint).is_file()


def test_the_baseline_sidecar_describes_the_shipped_checkpoint():
    shipped = describe_checkpoint("ml/weights/baseline.pt")
    sidecar = baseline_fields()
    assert {k: shipped[k] for k in ("name", "checkpoint", "threshold", "metrics")} == {
        k: sidecar[k] for k in ("name", "checkpoint", "threshold", "metrics")
    }


def test_with_no_champion_the_baseline_is_registered_again_from_its_sidecar():
    ModelVersion.objects.update(status="retired")
    version = registry.champion()
    assert version.name == baseline_fields()["name"] and version.status == "champion"
    assert ModelVersion.objects.filter(status="champion").count() == 1


def test_an_image_that_arrived_while_no_model_could_serve_is_predicted_right_after_a_promotion(
    corrupt_champion, test_checkpoint, eager, django_capture_on_commit_callbacks
):
    ModelVersion.objects.filter(pk=corrupt_champion.pk).update(servable=False, load_error="cannot be loaded")
    with django_capture_on_commit_callbacks(execute=True):
        image = ingest(mg_dataset())
    assert Image.objects.get(pk=image.pk).status == "received"
    with django_capture_on_commit_callbacks(execute=True):
        version = register_checkpoint(test_checkpoint, name="test-model", promote=True)
    prediction = Prediction.objects.get(image=image)
    assert prediction.model_version == version and prediction.status == "done"
    assert Study.objects.get(pk=image.study_id).exam_model == version


def test_images_failed_by_an_unloadable_champion_are_predicted_after_a_promotion(
    corrupt_champion, test_checkpoint, eager, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        image = ingest(mg_dataset())
    assert Prediction.objects.get(image=image).status == "failed"
    with django_capture_on_commit_callbacks(execute=True):
        version = register_checkpoint(test_checkpoint, name="test-model", promote=True)
    assert Prediction.objects.get(image=image, model_version=version).status == "done"


def test_in_the_compose_shape_workers_start_after_migrate_and_can_load_the_baseline():
    from django.conf import settings

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert "manage.py migrate" in compose["web"]["command"]
    consumed = set()
    for name in ("inference-worker", "training-worker", "beat"):
        assert compose[name]["depends_on"]["web"] == {"condition": "service_healthy"}, name
    for name in ("inference-worker", "training-worker"):
        consumed.add(compose[name]["command"].split("-Q ")[1].split()[0])
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert not any(pattern.strip("/") in ("ml", "ml/weights", "*.pt", "*.json") for pattern in ignored)
    assert "COPY . ." in (ROOT / "Dockerfile").read_text()
    from screening import tasks

    for task in (tasks.predict_image, tasks.predict_waiting_images, tasks.sweep_stuck_predictions, tasks.retrain):
        assert settings.CELERY_TASK_ROUTES[task.name]["queue"] in consumed, task.name


def test_a_rerun_with_an_unservable_champion_says_why_instead_of_queueing_nothing(rad_api, corrupt_champion):
    study = ingest(mg_dataset(patient_id="RERUN-1")).study
    registry.mark_unservable(corrupt_champion, "the checkpoint is not a zip archive")
    response = rad_api.post(f"/api/v1/studies/{study.pk}/predict/")
    assert response.status_code == 409
    assert "cannot be loaded (the checkpoint is not a zip archive)" in response.json()["error"]["message"]


def test_a_rerun_is_audited_with_who_asked_and_what_was_queued(rad_api, radiologist, champion):
    study = ingest(mg_dataset(patient_id="RERUN-2")).study
    Prediction.objects.filter(image__study=study).update(status="failed")
    response = rad_api.post(f"/api/v1/studies/{study.pk}/predict/")
    assert response.status_code == 202
    event = AuditEvent.objects.get(action="rerun_inference", study=study)
    assert event.user == radiologist
    assert event.detail == {"model_version": champion.name, "queued": 1}
