"""The inference queue with a real Celery worker process, Redis and PostgreSQL.

Skipped without REDIS_URL and a PostgreSQL DATABASE_URL (CI always sets both):
a worker process cannot share SQLite's in-memory test database.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from portal.celery import app
from screening.ai.services.predictions import sweep
from screening.intake.services.ingest import ingest_file
from screening.models import Image, Prediction
from tests.celery_worker import WorkerProcess, needs_worker_services, purge, wait_until
from tests.dicom_factory import mg_dataset, to_bytes

ROOT = Path(__file__).resolve().parents[2]
# serialized_rollback like every transactional test here: a plain flush re-creates content types that a
# later serialized restore would duplicate
pytestmark = [
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    needs_worker_services,
]


@contextlib.contextmanager
def broker(url: str):
    """Point this process's Celery producer at another broker."""
    old = app.conf.broker_url
    app.conf.broker_url = url
    app._pool = None
    app.amqp._producer_pool = None
    try:
        yield
    finally:
        app.conf.broker_url = old
        app._pool = None
        app.amqp._producer_pool = None


@pytest.fixture
def workers(media_root, champion):
    started: list[WorkerProcess] = []
    purge("inference")

    def start(name: str = "w1", broker_url: str | None = None) -> WorkerProcess:
        worker = WorkerProcess(media_root, "inference", name, broker_url=broker_url)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def upload(seed: int, **kwargs) -> Image:
    ds = mg_dataset(seed=seed, patient_id=f"W{seed}", **kwargs)
    return ingest_file(file=io.BytesIO(to_bytes(ds)), filename="x.dcm").image


def all_finished(images) -> bool:
    return not Prediction.objects.filter(image__in=images).exclude(status__in=["done", "failed"]).exists()


def test_an_upload_is_predicted_by_a_worker(workers):
    workers()
    image = upload(1)
    assert wait_until(lambda: all_finished([image]))
    prediction = Prediction.objects.get(image=image)
    assert prediction.status == "done" and prediction.probability is not None
    # the exam score follows the prediction's commit by a moment
    assert wait_until(lambda: Image.objects.get(pk=image.pk).study.status == "predicted", timeout=30)


def test_the_same_task_delivered_twice_through_the_queue_gives_one_prediction(workers):
    from screening.tasks import predict_image

    workers()
    image = upload(2)
    prediction = Prediction.objects.get(image=image)
    predict_image.delay(prediction.pk)
    predict_image.delay(prediction.pk)
    assert wait_until(lambda: all_finished([image]))
    time.sleep(2)  # let the duplicates be consumed
    assert Prediction.objects.filter(image=image).count() == 1
    assert Prediction.objects.get(pk=prediction.pk).attempts == 1


def test_a_corrupt_image_fails_with_its_reason_without_a_retry_storm(workers):
    from django.core.files.storage import default_storage

    image = upload(3)
    with default_storage.open(image.original.name, "wb") as fh:
        fh.write(b"not a dicom any more")
    workers()
    assert wait_until(lambda: all_finished([image]))
    prediction = Prediction.objects.get(image=image)
    assert prediction.status == "failed" and prediction.error
    assert prediction.attempts == 1


def test_killing_the_worker_mid_prediction_still_gives_exactly_one_prediction_per_image(workers, settings):
    # Long enough that the rescuer's own batch is never taken for stale on a loaded machine.
    settings.PORTAL_PREDICTION_STALE_SECONDS = 15
    settings.PORTAL_PREDICTION_REQUEUE_SECONDS = 15
    first = workers("doomed")
    images = [upload(10 + i) for i in range(4)]
    assert wait_until(lambda: Prediction.objects.filter(image__in=images, status="running").exists(), every=0.05)
    first.kill()
    assert Prediction.objects.filter(image__in=images).exclude(status="done").exists()
    workers("rescuer")
    # beat would run the sweeper every minute; here it runs every second
    assert wait_until(lambda: all_finished(images), timeout=180, every=1, on_tick=sweep)
    for image in images:
        assert Prediction.objects.filter(image=image).count() == 1
    assert set(Prediction.objects.filter(image__in=images).values_list("status", flat=True)) == {"done"}


def test_uploads_while_the_broker_is_down_are_predicted_once_it_is_back(workers, settings, tmp_path):
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        pytest.skip("redis-server not installed")
    settings.PORTAL_PREDICTION_REQUEUE_SECONDS = 1
    port = 6391
    url = f"redis://127.0.0.1:{port}/0"

    def start_redis():
        return subprocess.Popen(
            [
                redis_server,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(tmp_path),
            ],
            stdout=subprocess.DEVNULL,
        )

    with broker(url):
        images = [upload(20 + i) for i in range(2)]  # no broker at all: uploads still succeed
        assert Image.objects.filter(pk__in=[i.pk for i in images]).count() == 2
        assert set(Prediction.objects.filter(image__in=images).values_list("status", flat=True)) == {"queued"}
        redis = start_redis()
        try:
            time.sleep(1)
            workers("after-outage", broker_url=url)
            assert wait_until(lambda: all_finished(images), timeout=120, every=1, on_tick=sweep)
        finally:
            redis.terminate()
            redis.wait()
    assert set(Prediction.objects.filter(image__in=images).values_list("status", flat=True)) == {"done"}
    assert Prediction.objects.filter(image__in=images).count() == 2
