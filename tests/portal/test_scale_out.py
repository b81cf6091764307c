"""Scale out (issue 14): two inference workers on one broker share the queue, and each image is
predicted exactly once (the conditional claim, not the broker, guarantees it).

Skipped without REDIS_URL and a PostgreSQL DATABASE_URL (CI always sets both).
"""

from __future__ import annotations

import io
import re

import pytest

from screening.intake.services.ingest import ingest_file
from screening.models import Image, Prediction
from tests.celery_worker import WorkerProcess, needs_worker_services, purge, wait_until
from tests.dicom_factory import mg_dataset, to_bytes

pytestmark = [
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    needs_worker_services,
]

IMAGES = 12


def test_two_inference_workers_on_one_broker_predict_each_image_exactly_once(media_root, champion, monkeypatch):
    # Small batches, so that both workers claim work (a worker claims up to a batch of waiting predictions).
    monkeypatch.setenv("PORTAL_INFERENCE_BATCH", "2")
    purge("inference", "render")
    workers = [WorkerProcess(media_root, "inference", f"scale{n}") for n in (1, 2)]
    try:
        images = [
            ingest_file(
                file=io.BytesIO(to_bytes(mg_dataset(seed=i, patient_id=f"SO{i // 2}", laterality="LR"[i % 2]))),
                filename=f"{i}.dcm",
            ).image
            for i in range(IMAGES)
        ]
        finished = lambda: not Prediction.objects.filter(image__in=images).exclude(status="done").exists()  # noqa: E731
        assert wait_until(finished, timeout=600), [w.log.read_text()[-2000:] for w in workers]
    finally:
        for worker in workers:
            worker.stop()
        purge("inference", "render")

    rows = list(Prediction.objects.filter(image__in=images).values_list("image_id", "model_version_id", "attempts"))
    assert sorted(image_id for image_id, _, _ in rows) == sorted(image.pk for image in images)  # one row each
    assert {version for _, version, _ in rows} == {champion.pk}
    assert {attempts for _, _, attempts in rows} == {1}  # claimed once: never predicted twice
    assert set(Image.objects.filter(pk__in=[i.pk for i in images]).values_list("status", flat=True)) == {"predicted"}
    # Both workers took tasks from the one queue (each logs the tasks it received).
    received = [
        len(re.findall(r"Task screening\.tasks\.predict_image\[.*\] received", w.log.read_text())) for w in workers
    ]
    assert all(count > 0 for count in received), received
