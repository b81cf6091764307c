"""Monitoring in the API: the same figures and plots as the page, admins only, runs on demand, acknowledgement."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.monitoring.streams import add_images, make_version


@pytest.fixture
def admin_api(admin_user):
    from tests.conftest import _token_client

    return _token_client(admin_user)


@pytest.fixture
def drifted(settings, db):
    """A version whose stream changed vendor, with one done run and its alerts."""
    from screening.models import MonitoringRun
    from screening.monitoring import services

    settings.PORTAL_MONITORING_REFERENCE_IMAGES = 100
    settings.PORTAL_MONITORING_MIN_IMAGES = 100
    version = make_version()
    now = timezone.now()
    add_images(version, 100, start=now - timedelta(days=29), seed=1)
    add_images(version, 100, start=now - timedelta(days=20), seed=2, vendor="VendorB")
    run = MonitoringRun.objects.create(model_version=version)
    services.run_monitoring(run.pk, now=now)
    return version


def test_the_api_gives_the_figures_and_plots_of_the_page(drifted, admin_api):
    body = admin_api.get(f"/api/v1/monitoring/models/{drifted.pk}/").json()
    assert body["settings"]["measure"] == "population stability index (PSI)"
    manufacturer = next(m for m in body["drift"] if m["feature"] == "manufacturer" and m["site"] is None)
    assert manufacturer["drifted"] is True and manufacturer["psi"] > 0.25
    assert body["plots"]["drift_over_time"].startswith("<svg")
    assert "score_distribution" in body["plots"]
    assert body["drift_history"]["manufacturer"][0]["psi"] == pytest.approx(manufacturer["psi"])
    assert body["subgroups"]["all"]["n"] == 0  # no exam has a truth yet
    assert any(a["key"] == "drift:manufacturer:*:*" for a in body["alerts"])


def test_an_alert_is_acknowledged_once_through_the_api(drifted, admin_api):
    from screening.models import AuditEvent

    alerts = admin_api.get("/api/v1/monitoring/alerts/?open=1").json()["results"]
    target = alerts[0]["id"]
    done = admin_api.post(f"/api/v1/monitoring/alerts/{target}/acknowledge/", {"note": "known"}, format="json")
    assert done.status_code == 200 and done.json()["acknowledged"]["by"] == "boss"
    twice = admin_api.post(f"/api/v1/monitoring/alerts/{target}/acknowledge/", {}, format="json")
    assert twice.status_code == 409 and twice.json()["error"]["code"] == "conflict"
    assert AuditEvent.objects.filter(action="monitoring_alert_ack").count() == 1
    left = admin_api.get("/api/v1/monitoring/alerts/?open=1").json()["results"]
    assert target not in [a["id"] for a in left]
    too_long = admin_api.post(
        f"/api/v1/monitoring/alerts/{left[0]['id']}/acknowledge/", {"note": "x" * 501}, format="json"
    )
    assert too_long.status_code == 400


def test_only_admins_see_monitoring(db, api, rad_api, anon_api):
    version = make_version()
    for client, code in ((api, 403), (rad_api, 403), (anon_api, 401)):
        assert client.get(f"/api/v1/monitoring/models/{version.pk}/").status_code == code
        assert client.post(f"/api/v1/monitoring/models/{version.pk}/runs/").status_code == code
        assert client.get("/api/v1/monitoring/alerts/").status_code == code


def test_unknown_version_or_alert_is_a_404(db, admin_api):
    assert admin_api.get("/api/v1/monitoring/models/999999/").status_code == 404
    assert admin_api.post("/api/v1/monitoring/alerts/999999/acknowledge/", {}, format="json").status_code == 404


def test_an_on_demand_run_is_queued_once_and_audited(db, admin_api, django_capture_on_commit_callbacks):
    from screening.models import AuditEvent, MonitoringRun

    version = make_version()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        first = admin_api.post(f"/api/v1/monitoring/models/{version.pk}/runs/")
    assert first.status_code == 202 and first.json()["status"] == "queued"
    assert len(callbacks) == 1  # the task is sent after the commit
    second = admin_api.post(f"/api/v1/monitoring/models/{version.pk}/runs/")
    assert second.status_code == 409
    assert MonitoringRun.objects.filter(model_version=version).count() == 1
    assert AuditEvent.objects.filter(action="monitoring_run").count() == 1


def test_the_nightly_run_is_in_the_beat_schedule_on_the_export_queue(db):
    from django.conf import settings
    from django_celery_beat.models import PeriodicTask

    from portal.celery import app

    task = PeriodicTask.objects.get(name="nightly-monitoring")
    assert task.task == "screening.monitoring.tasks.nightly_monitoring" and task.crontab.hour == "3"
    assert settings.CELERY_TASK_ROUTES["screening.monitoring.tasks.*"] == {"queue": "export"}
    app.loader.import_default_modules()
    assert "screening.monitoring.tasks.nightly_monitoring" in app.tasks


def test_a_run_left_running_by_a_dead_worker_does_not_block_the_next_one(db, admin_api):
    from datetime import timedelta

    from django.utils import timezone

    from screening.models import MonitoringRun

    version = make_version()
    dead = MonitoringRun.objects.create(model_version=version, status="running")
    MonitoringRun.objects.filter(pk=dead.pk).update(created=timezone.now() - timedelta(hours=7))
    response = admin_api.post(f"/api/v1/monitoring/models/{version.pk}/runs/")
    assert response.status_code == 202
    dead.refresh_from_db()
    assert dead.status == "failed" and "abandoned" in dead.error
