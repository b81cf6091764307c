"""Issue 12 leftovers: one AI-result SR per study and model version, sent once the study has settled;
in embedded mode a failing send never holds the request while it is retried."""

from __future__ import annotations

import io
import threading

import pytest
from pydicom.uid import generate_uid

from screening.ai import inference
from screening.ai.services import predicting
from screening.exchange.services import export as export_service
from screening.intake.services.ingest import ingest_file
from screening.models import DicomExport
from tests.celery_worker import wait_until
from tests.dicom_factory import mg_dataset, to_bytes
from tests.eager import tasks_in_process
from tests.portal.test_dicom_sr import PeakPredictor, decide, free_port, ingest_study

EXPORT = "screening.tasks.export_study_sr"


@pytest.fixture
def model(monkeypatch, champion):
    monkeypatch.setattr(inference, "_loaded", (champion.pk, PeakPredictor()))
    return champion


@pytest.mark.django_db
def test_an_ai_sr_waits_until_the_study_has_had_no_new_image_for_the_settling_time(model, settings):
    settings.PORTAL_DICOM_DESTINATIONS = [("PACS", "127.0.0.1", free_port())]
    settings.PORTAL_DICOM_EXPORT_STABLE_SECONDS = 3600
    study_uid = generate_uid()
    for laterality in ("L", "R"):  # image by image, each predicted as it comes
        ds = mg_dataset(laterality=laterality, study_uid=study_uid)
        image = ingest_file(file=io.BytesIO(to_bytes(ds)), filename="x.dcm").image
        predicting.run_prediction(image.predictions.get().pk)
    [export] = DicomExport.objects.all()  # one SR for the study and model version, not one per image
    with pytest.raises(export_service.NotStable):
        export_service.send_export(export.pk)
    export.refresh_from_db()
    assert export.status == "pending" and export.attempts == 0  # waiting is not a failed attempt


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_in_embedded_mode_a_failing_send_is_retried_off_the_request(radiologist, settings):
    settings.PORTAL_DICOM_EXPORT_MAX_ATTEMPTS = 2
    settings.PORTAL_DICOM_DESTINATIONS = [("PACS", "127.0.0.1", free_port())]  # nobody listens there
    study = ingest_study()
    with tasks_in_process(EXPORT) as runs:
        decide(study, radiologist)  # committed: the export's task runs in-process, as run.sh does
        export = DicomExport.objects.get(study=study)
        # The request is answered after one attempt; before, the eager retries all ran inside it.
        assert runs[export.pk] == 1
        assert export.status == "pending" and export.attempts == 1
        assert any(isinstance(t, threading.Timer) for t in threading.enumerate())  # the retry waits there
        assert wait_until(lambda: DicomExport.objects.get(pk=export.pk).status == "failed", timeout=60)
    export.refresh_from_db()
    assert export.attempts == 2 and "gave up after 2 attempts" in export.error
