"""A monitoring run asked for on the page is computed by a real Celery worker on the export queue."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.celery_worker import WorkerProcess, needs_worker_services, purge, wait_until
from tests.monitoring.streams import add_images, make_version

pytestmark = [
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    needs_worker_services,
]


def test_a_run_asked_for_on_the_page_is_computed_by_the_export_worker(media_root, client, admin_user):
    from screening.models import ImageStats, MonitoringRun

    version = make_version()
    ids = add_images(version, 12, start=timezone.now() - timedelta(days=2), seed=3)
    purge("export")
    worker = WorkerProcess(media_root, "export", "monitor")
    try:
        client.force_login(admin_user)
        response = client.post(reverse("monitoring-run", args=[version.pk]))
        assert response.status_code == 302
        run = MonitoringRun.objects.get(model_version=version)
        assert wait_until(lambda: MonitoringRun.objects.get(pk=run.pk).status in ("done", "failed"), timeout=180)
    finally:
        worker.stop()
    run.refresh_from_db()
    assert run.status == "done", run.error
    assert run.reference["n"] == 12 and run.reference["complete"] is False  # fewer than the reference needs
    stats = ImageStats.objects.get(image_id=ids[0])
    assert stats.manufacturer == "VendorA" and stats.model_name == "Unit 1"
    assert stats.pixel_spacing == pytest.approx(0.1) and stats.bits_stored == 12
    assert 0 < stats.mean_intensity < 1 and stats.breast_area_cm2 > 0
