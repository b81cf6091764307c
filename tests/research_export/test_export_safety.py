"""The export's own safety net and its worker: a de-identification that misses an identifier fails the whole
export and stores nothing; a real export worker builds what the page queued."""

from __future__ import annotations

import io

import pytest
from django.urls import reverse

from tests.celery_worker import WorkerProcess, needs_worker_services, purge, wait_until
from tests.conftest import stored_files
from tests.dicom_factory import to_bytes
from tests.research_export.sources import identified_mammogram


def _ingest():
    from screening.intake.services.ingest import ingest_file

    return ingest_file(file=io.BytesIO(to_bytes(identified_mammogram())), filename="l.dcm").image


def test_a_missed_identifier_fails_the_export_and_keeps_nothing(db, admin_user, media_root, monkeypatch):
    from screening.models import AuditEvent, ResearchExport
    from screening.research_export import deidentify, services

    _ingest()
    before = stored_files(media_root)
    monkeypatch.setattr(deidentify, "_clean", lambda ds, options: None)  # as if the library missed the free text
    project = services.create_project(name="leaky", user=admin_user)
    export = services.request_export(
        project=project, user=admin_user, reason="a long enough reason", filters={}, options={}
    )
    assert services.build_export(export.pk) == "failed"
    export = ResearchExport.objects.get(pk=export.pk)
    assert export.status == "failed" and "source identifier" in export.error
    assert not export.archive
    assert stored_files(media_root) == before  # no archive, no partial file
    assert AuditEvent.objects.filter(action="research_export_failed").exists()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@needs_worker_services
def test_an_export_queued_on_the_page_is_built_by_the_export_worker(media_root, client, admin_user):
    from screening.models import ResearchExport
    from screening.research_export import services

    _ingest()
    project = services.create_project(name="worker", user=admin_user)
    purge("export")
    worker = WorkerProcess(media_root, "export", "research")
    try:
        client.force_login(admin_user)
        response = client.post(
            reverse("research-export-new"),
            {"project": project.pk, "reason": "a long enough reason", "retain_dates": "on"},
        )
        assert response.status_code == 302
        export = ResearchExport.objects.get()
        assert wait_until(lambda: ResearchExport.objects.get(pk=export.pk).status in ("done", "failed"), timeout=180)
    finally:
        worker.stop()
    export.refresh_from_db()
    assert export.status == "done", export.error
    assert export.progress == {"done": 1, "total": 1} and export.summary["images"] == 1
    page = client.get(reverse("research-exports")).content.decode()
    assert "Download (once)" in page


def test_an_export_left_running_by_a_dead_worker_is_failed_when_exports_are_listed(db, admin_user, client):
    from datetime import timedelta

    from django.utils import timezone

    from screening.models import ResearchExport
    from screening.research_export import services

    project = services.create_project(name="stale", user=admin_user)
    export = ResearchExport.objects.create(project=project, requested_by=admin_user, reason="x" * 12, status="running")
    ResearchExport.objects.filter(pk=export.pk).update(created=timezone.now() - timedelta(hours=8))
    client.force_login(admin_user)
    assert client.get(reverse("research-exports")).status_code == 200
    export.refresh_from_db()
    assert export.status == "failed" and "abandoned" in export.error


def test_a_name_inside_a_kept_word_does_not_stop_the_export(db, admin_user):
    """A woman called Hol imaged on a Hologic unit: the manufacturer stays, her name does not, the export runs."""
    from screening.intake.services.ingest import ingest_file
    from screening.models import ResearchExport
    from screening.research_export import services

    ds = identified_mammogram()
    ds.PatientName, ds.Manufacturer = "Hol^Ann", "Hologic"
    ingest_file(file=io.BytesIO(to_bytes(ds)), filename="h.dcm")
    project = services.create_project(name="hologic", user=admin_user)
    export = services.request_export(
        project=project, user=admin_user, reason="a long enough reason", filters={}, options={}
    )
    services.build_export(export.pk)
    export = ResearchExport.objects.get(pk=export.pk)
    assert export.status == "done", export.error
    assert export.summary["images"] == 1


def test_the_page_polls_the_progress_of_an_export_still_building(db, admin_user, client):
    from screening.models import ResearchExport
    from screening.research_export import services

    project = services.create_project(name="polled", user=admin_user)
    export = ResearchExport.objects.create(
        project=project, requested_by=admin_user, reason="x" * 12, status="running", progress={"done": 2, "total": 5}
    )
    client.force_login(admin_user)
    page = client.get(reverse("research-exports")).content.decode()
    assert f'data-status-url="{reverse("research-export-status", args=[export.pk])}"' in page
    assert "2 / 5 images" in page and "research_exports.js" in page
    status = client.get(reverse("research-export-status", args=[export.pk])).json()
    assert status["progress"] == {"done": 2, "total": 5} and status["status"] == "running"
