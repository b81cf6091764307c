"""The retraining loop with real worker processes: a `-Q training` worker trains, a `-Q inference` worker serves.

Skipped without REDIS_URL and a PostgreSQL DATABASE_URL, like test_worker.py:
worker processes cannot share SQLite's in-memory test database.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest

from screening.ai.services import promotion, training
from screening.intake.services.ingest import ingest_file
from screening.models import ModelVersion, Prediction, TrainingRun
from tests.celery_worker import WorkerProcess, needs_worker_services, purge, wait_until
from tests.ml.phantoms import phantom
from tests.portal.test_training import LESION, add_woman, png

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),  # keeps the role groups of migrations
    needs_worker_services,
]


@pytest.fixture
def workers(media_root, champion, settings):
    settings.PORTAL_VALIDATION_FRACTION = 0.34  # the same pools as the worker's settings
    purge("training", "inference")
    started = {
        queue: WorkerProcess(media_root, queue, queue, settings_module="tests.portal.training_worker_settings")
        for queue in ("training", "inference")
    }
    yield started
    for worker in started.values():
        worker.stop()


@pytest.fixture
def cohort(radiologist):
    return [add_woman(n, abnormal=n % 2 == 1, radiologist=radiologist) for n in range(12)]


def served_by(n: int) -> ModelVersion:
    """Upload a new image and return the model version whose prediction the inference worker recorded."""
    pixels = phantom(lesion=LESION, seed=1000 + n)
    image = ingest_file(
        file=io.BytesIO(png(pixels)), filename=f"new{n}.png", patient_id=f"NEW{n}", laterality="L"
    ).image
    assert wait_until(lambda: Prediction.objects.filter(image=image, status="done").exists(), timeout=120)
    return Prediction.objects.select_related("model_version").get(image=image).model_version


def test_decisions_train_a_candidate_that_is_promoted_served_and_rolled_back(workers, champion, cohort):
    ModelVersion.objects.filter(pk=champion.pk).update(threshold=0.99)  # an untrained head: it misses lesions
    run = training.trigger_run(trigger="api")
    assert wait_until(lambda: TrainingRun.objects.get(pk=run.pk).status in ("succeeded", "failed"), timeout=240)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error + workers["training"].log.read_text()[-3000:]
    candidate = run.candidate
    assert candidate.status == "champion", candidate.note
    assert candidate.metrics["locked_validation"]["n"] == 8  # 4 locked women x 2 breasts
    assert run.data_summary["init"] == "fine-tune test-model" and len(run.snapshot_hash) == 64
    # New predictions carry the new champion, without restarting the inference worker.
    assert served_by(1) == candidate
    promotion.rollback()
    assert served_by(2) == champion
    assert ModelVersion.objects.get(pk=candidate.pk).status == "retired"


def test_killing_the_training_worker_mid_run_leaves_the_champion_serving(workers, champion, cohort, settings):
    run = training.trigger_run(trigger="api")

    def training_has_begun() -> bool:
        progress = TrainingRun.objects.get(pk=run.pk).progress or {}
        return progress.get("stage") in ("features", "train")

    assert wait_until(training_has_begun, every=0.05)
    workers["training"].kill()
    settings.PORTAL_TRAINING_STALE_SECONDS = 1
    time.sleep(1.5)
    assert training.release_stuck_runs() == [run.pk]
    run.refresh_from_db()
    assert run.status == "failed" and run.error.startswith("stuck")
    assert ModelVersion.objects.get(status="champion") == champion
    assert served_by(3) == champion
