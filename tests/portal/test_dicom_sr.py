"""Results back to the PACS: the AI-result and decision SRs (highdicom, TID 1500), checked by dcmtk's
dsrdump, sent by C-STORE to dcmtk's storescp, with bounded retries and a visible status."""

from __future__ import annotations

import io
import socket
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from django.contrib.admin.sites import site
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import default_storage
from django.test import RequestFactory
from django.utils import timezone
from pydicom import dcmread
from pydicom.uid import generate_uid

from screening.ai import inference
from screening.ai.services import predicting
from screening.exchange import sr
from screening.exchange.admin import DicomExportAdmin
from screening.exchange.services import export as export_service
from screening.intake.services.ingest import ingest_file
from screening.intake.services.studies import delete_study
from screening.models import AuditEvent, DicomDestination, DicomExport, Image, Prediction, Study
from screening.reading.services.reviews import FindingInput, review_submit
from tests.dicom_factory import mg_dataset, to_bytes
from tests.eager import tasks_in_process
from tests.predictors import OneByOne
from tests.uploads import png_bytes

pytestmark = pytest.mark.django_db

DSRDUMP = "/usr/bin/dsrdump"
STORESCP = "/usr/bin/storescp"  # dcmtk's; pynetdicom installs a `storescp` script of its own in the venv
ROWS, COLUMNS = 256, 200
PEAK_ROW, PEAK_COLUMN = 64, 150  # where the fake model's heatmap peaks, in original pixels


class PeakPredictor(OneByOne):
    """A model whose heatmap is 0 except at one pixel, with a probability per laterality."""

    def predict(self, items, batch_size=8):
        from ml.inference import PredictionResult

        results = []
        for image, laterality, *_ in items:  # the loader also gives the source kind
            heat = np.zeros(image.shape, np.float32)
            heat[PEAK_ROW, PEAK_COLUMN] = 0.9
            probability = 0.8 if laterality == "L" else 0.2
            results.append(PredictionResult(probability, heat, 0.0, 1.0, 1.0))
        return results


@pytest.fixture
def eager():
    """Embedded mode: tasks run in this process; counts export_study_sr runs per export id."""
    with tasks_in_process("screening.tasks.export_study_sr") as runs:
        yield runs


@pytest.fixture
def model(monkeypatch, champion):
    monkeypatch.setattr(inference, "_loaded", (champion.pk, PeakPredictor()))
    return champion


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def pacs(tmp_path):
    """dcmtk's storescp on a free port, writing what it receives to a folder: (AE title, port, folder)."""
    port, folder = free_port(), tmp_path / "pacs"
    folder.mkdir()
    process = subprocess.Popen(
        [STORESCP, "-aet", "PACS", "-od", str(folder), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        for _ in range(200):  # until it listens (bounded)
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                break
            except OSError:
                assert process.poll() is None, process.stderr.read().decode()
                time.sleep(0.05)
        yield "PACS", port, folder
    finally:
        process.terminate()
        process.wait(10)


def dsrdump(path: Path) -> str:
    """dsrdump's strict defaults: any error or warning (about the document, its template or an item) fails."""
    result = subprocess.run([DSRDUMP, str(path)], capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    return result.stdout


def write(document, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    document.save_as(path, enforce_file_format=True)
    return path


def ingest_study(study_uid: str | None = None, user=None) -> Study:
    """A left and a right CC view of one DICOM study (predicted in-process when a model is loaded)."""
    study_uid = study_uid or generate_uid()
    for laterality in ("L", "R"):
        ds = mg_dataset(laterality=laterality, study_uid=study_uid)
        ingest_file(file=io.BytesIO(to_bytes(ds)), filename="x.dcm", user=user)
    return Study.objects.get(study_uid=study_uid)


@pytest.fixture
def scored(model, eager, django_capture_on_commit_callbacks) -> Study:
    with django_capture_on_commit_callbacks(execute=True):
        study = ingest_study()
    study.refresh_from_db()
    assert study.exam_model == model and study.exam_score is not None
    return study


def content_items(dataset):
    """Every content item of an SR tree, depth first."""
    for item in getattr(dataset, "ContentSequence", []):
        yield item
        yield from content_items(item)


def meanings(dataset) -> list[str]:
    return [
        item.ConceptNameCodeSequence[0].CodeMeaning
        for item in content_items(dataset)
        if "ConceptNameCodeSequence" in item
    ]


# --- the AI-result SR ----------------------------------------------------------------------------------


def test_the_ai_result_sr_carries_the_model_probabilities_peak_regions_and_source_instances(scored, tmp_path):
    document = sr.ai_result_sr(scored)
    text = dsrdump(write(document, tmp_path, "ai.dcm"))
    ds = dcmread(tmp_path / "ai.dcm")
    images = list(Image.objects.filter(study=scored).order_by("pk"))

    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert ds.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert ds.StudyInstanceUID == scored.study_uid and ds.PatientID == "PAT-0001"  # copied from the source header
    assert scored.exam_model.name in text and "CAD Operating Point" in text
    evidence = {
        ref.ReferencedSOPInstanceUID
        for study in ds.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
        for ref in series.ReferencedSOPSequence
    }
    assert evidence == {image.sop_uid for image in images}

    numbers = [
        float(item.MeasuredValueSequence[0].NumericValue)
        for item in content_items(ds)
        if item.ValueType == "NUM" and item.ConceptNameCodeSequence[0].CodeValue == "111047"
    ]
    # exam, left breast, right breast, and each image: 0.8 for the left view, 0.2 for the right
    assert pytest.approx(sorted(numbers)) == sorted(
        [scored.exam_score, scored.score_left, scored.score_right, 0.8, 0.2]
    )
    operating_points = [
        float(item.MeasuredValueSequence[0].NumericValue)
        for item in content_items(ds)
        if item.ValueType == "NUM" and item.ConceptNameCodeSequence[0].CodeValue == "111071"
    ]
    assert operating_points == [pytest.approx(scored.exam_model.threshold)]

    report = hd.sr.Comprehensive3DSR.from_dataset(ds).content
    regions = report.get_planar_roi_measurement_groups()
    assert len(regions) == 2
    for group in regions:
        assert group.roi.graphic_type == hd.sr.GraphicTypeValues.POINT
        assert group.roi.value.tolist() == [[PEAK_COLUMN + 0.5, PEAK_ROW + 0.5]]  # the heatmap peak, in pixels
    assert {group.roi.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID for group in regions} == {
        image.sop_uid for image in images
    }


def test_the_ai_result_sr_gives_the_models_top_regions_as_boxes_on_the_source_image(scored, tmp_path):
    prediction = Prediction.objects.filter(image__study=scored, status="done").order_by("pk").first()
    Prediction.objects.filter(pk=prediction.pk).update(
        regions=[
            {"x": 10.0, "y": 20.0, "width": 30.0, "height": 40.0, "probability": 0.7},
            {"x": 100.0, "y": 150.0, "width": 20.0, "height": 20.0, "probability": 0.4},
        ]
    )
    document = sr.ai_result_sr(scored)
    dsrdump(write(document, tmp_path, "ai.dcm"))  # dcmtk parses it
    groups = hd.sr.Comprehensive3DSR.from_dataset(dcmread(tmp_path / "ai.dcm")).content
    boxes = [
        g.roi.value.tolist()
        for g in groups.get_planar_roi_measurement_groups()
        if g.roi.graphic_type == hd.sr.GraphicTypeValues.POLYLINE
    ]
    assert [[10, 20], [40, 20], [40, 60], [10, 60], [10, 20]] in boxes
    assert [[100, 150], [120, 150], [120, 170], [100, 170], [100, 150]] in boxes


def test_a_study_of_png_uploads_has_no_sr_and_queues_no_export(
    model, settings, eager, django_capture_on_commit_callbacks
):
    settings.PORTAL_DICOM_DESTINATIONS = [("PACS", "127.0.0.1", free_port())]
    pixels = (np.random.default_rng(0).random((ROWS, COLUMNS)) * 255).astype(np.uint8)
    with django_capture_on_commit_callbacks(execute=True):
        image = ingest_file(file=io.BytesIO(png_bytes(pixels)), filename="x.png", patient_id="P1", laterality="L").image
    study = Study.objects.get(pk=image.study_id)
    assert study.exam_score is not None
    with pytest.raises(sr.NoSource):
        sr.ai_result_sr(study)
    assert not DicomExport.objects.exists()


# --- the decision SR -----------------------------------------------------------------------------------


def decide(study: Study, radiologist, **kwargs):
    image = Image.objects.filter(study=study, laterality="L").first()
    findings = [FindingInput(image.pk, "mass", 10, 20, 30, 40), FindingInput(image.pk, "calcification", 50, 60)]
    arguments = {"decision": "abnormal", "birads": 4, "density": "C", "findings": findings, **kwargs}
    return review_submit(study=study, radiologist=radiologist, **arguments)


def test_the_decision_sr_carries_the_decision_birads_density_findings_and_reader(radiologist, tmp_path):
    radiologist.first_name, radiologist.last_name = "Ada", "Reader"
    radiologist.save()
    study = ingest_study()
    review = decide(study, radiologist)
    text = dsrdump(write(sr.decision_sr(review), tmp_path, "decision.dcm"))
    ds = dcmread(tmp_path / "decision.dcm")

    assert "Abnormal" in text and "Reader^Ada" in text
    codes = {
        item.ConceptNameCodeSequence[0].CodeMeaning: item.ConceptCodeSequence[0].CodeValue
        for item in content_items(ds)
        if item.ValueType == "CODE"
    }
    assert codes["Normality"] == "263654008"  # SCT Abnormal
    assert codes["Assessment Category"] == "397144001"  # BI-RADS 4
    assert codes["Breast composition"] == "129718006"  # density C: heterogeneously dense
    report = hd.sr.Comprehensive3DSR.from_dataset(ds).content
    regions = {
        group.roi.graphic_type.value: group.roi.value.tolist() for group in report.get_planar_roi_measurement_groups()
    }
    assert regions["POLYLINE"] == [[10, 20], [40, 20], [40, 60], [10, 60], [10, 20]]  # the mass, a closed box
    assert regions["POINT"] == [[50, 60]]  # the calcification, a point
    assert "PredecessorDocumentsSequence" not in ds


def test_a_corrections_sr_refers_to_the_sr_of_the_decision_it_corrects(
    radiologist, tmp_path, settings, pacs, eager, django_capture_on_commit_callbacks
):
    ae_title, port, _ = pacs
    settings.PORTAL_DICOM_DESTINATIONS = [(ae_title, "127.0.0.1", port)]
    study = ingest_study()
    with django_capture_on_commit_callbacks(execute=True):
        first = decide(study, radiologist)
    with django_capture_on_commit_callbacks(execute=True):
        second = decide(study, radiologist, decision="normal", birads=2, findings=[])
    ds = dcmread(io.BytesIO(to_bytes(sr.decision_sr(second))))
    dsrdump(write(sr.decision_sr(second), tmp_path, "correction.dcm"))

    sent_first = DicomExport.objects.get(review=first)
    predecessor = ds.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert predecessor.ReferencedSOPInstanceUID == sent_first.sop_instance_uid == sr.decision_uid(first)
    assert DicomExport.objects.get(review=second).sop_instance_uid == ds.SOPInstanceUID != sent_first.sop_instance_uid


# --- sending ------------------------------------------------------------------------------------------------


def test_both_srs_reach_a_real_storescp_and_are_marked_sent(
    model, radiologist, settings, pacs, eager, django_capture_on_commit_callbacks
):
    ae_title, port, folder = pacs
    DicomDestination.objects.create(ae_title=ae_title, host="127.0.0.1", port=port)
    with django_capture_on_commit_callbacks(execute=True):
        study = ingest_study()
    with django_capture_on_commit_callbacks(execute=True):
        review = decide(study, radiologist)

    exports = list(DicomExport.objects.filter(study=study).order_by("pk"))
    assert [(e.kind, e.status, e.attempts, e.error) for e in exports] == [
        ("ai", "sent", 1, ""),
        ("decision", "sent", 1, ""),
    ]
    assert exports[1].review == review
    received = {dcmread(path).SOPInstanceUID: dcmread(path) for path in folder.iterdir()}
    assert set(received) == {e.sop_instance_uid for e in exports}
    ai = received[exports[0].sop_instance_uid]
    assert ai.StudyInstanceUID == study.study_uid
    for export in exports:  # kept in storage, where WADO-RS can serve it
        assert export.sr_file.name.startswith("sr/") and default_storage.exists(export.sr_file.name)

    assert export_service.send_export(exports[0].pk) == "sent"  # a sent export is not sent again
    assert len(list(folder.iterdir())) == 2 and DicomExport.objects.get(pk=exports[0].pk).attempts == 1


def test_a_destination_that_is_down_is_retried_a_bounded_number_of_times_then_fails_with_the_reason(
    radiologist, settings
):
    settings.PORTAL_DICOM_EXPORT_MAX_ATTEMPTS = 3
    settings.PORTAL_DICOM_DESTINATIONS = [("PACS", "127.0.0.1", free_port())]  # nobody listens there
    study = ingest_study()
    decide(study, radiologist)
    export = DicomExport.objects.get(study=study)
    reasons = []
    for _ in range(3):  # what the export worker's retries do, one attempt each
        try:
            export_service.send_export(export.pk)
        except export_service.TryAgain as exc:
            reasons.append(str(exc))
    export.refresh_from_db()
    assert len(reasons) == 2 and all("could not connect to PACS@127.0.0.1" in r for r in reasons)
    assert export.status == "failed" and export.attempts == 3
    assert "gave up after 3 attempts" in export.error and "could not connect to PACS@127.0.0.1" in export.error
    assert export_service.send_export(export.pk) == "failed" and export.attempts == 3  # no more


def test_the_sweeper_sends_again_a_pending_export_whose_task_was_lost(
    radiologist, settings, pacs, eager, django_capture_on_commit_callbacks
):
    ae_title, port, folder = pacs
    settings.PORTAL_DICOM_DESTINATIONS = [(ae_title, "127.0.0.1", port)]
    study = ingest_study()
    decide(study, radiologist)  # committed, but its task never ran (the broker was down)
    export = DicomExport.objects.get(study=study)
    assert export.status == "pending"
    with django_capture_on_commit_callbacks(execute=True):
        assert export_service.sweep() == 0  # not stale yet: it may be waiting for a retry
    with django_capture_on_commit_callbacks(execute=True):
        assert export_service.sweep(now=timezone.now() + timedelta(seconds=export_service.STALE_SECONDS + 1)) == 1
    export.refresh_from_db()
    assert export.status == "sent" and len(list(folder.iterdir())) == 1


def test_images_predicted_one_by_one_make_one_ai_sr_of_the_whole_exam(model, settings, pacs):
    """Issue 12: a C-STORE study predicted image by image made one AI SR per image; now one per
    study and model version, built when it is sent, so it covers every image."""
    ae_title, port, folder = pacs
    settings.PORTAL_DICOM_DESTINATIONS = [(ae_title, "127.0.0.1", port)]
    study_uid = generate_uid()

    def arrive(laterality):  # C-STORE sends one image at a time; each is predicted as it comes
        ds = mg_dataset(laterality=laterality, study_uid=study_uid)
        image = ingest_file(file=io.BytesIO(to_bytes(ds)), filename="x.dcm").image
        predicting.run_prediction(image.predictions.get().pk)

    arrive("L")
    arrive("R")
    [export] = DicomExport.objects.all()
    assert export.kind == "ai" and export.sop_instance_uid == sr.ai_result_uid(export.study, model)
    assert export_service.send_export(export.pk) == "sent"
    [received] = [dcmread(path) for path in folder.iterdir()]
    evidence = [
        ref.ReferencedSOPInstanceUID
        for series in received.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
        for ref in series.ReferencedSOPSequence
    ]
    assert received.SOPInstanceUID == export.sop_instance_uid and len(evidence) == 2  # both images


def test_without_destinations_nothing_is_queued(model, radiologist, eager, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        study = ingest_study()
    with django_capture_on_commit_callbacks(execute=True):
        decide(study, radiologist)
    DicomDestination.objects.create(ae_title="OFF", host="127.0.0.1", port=4242, enabled=False)
    with django_capture_on_commit_callbacks(execute=True):
        decide(study, radiologist, decision="normal", birads=1, findings=[])
    assert not DicomExport.objects.exists() and not eager


def test_deleting_a_study_deletes_its_sr_files(
    radiologist, settings, pacs, admin_user, eager, django_capture_on_commit_callbacks
):
    ae_title, port, _ = pacs
    settings.PORTAL_DICOM_DESTINATIONS = [(ae_title, "127.0.0.1", port)]
    study = ingest_study()
    with django_capture_on_commit_callbacks(execute=True):
        decide(study, radiologist)
    name = DicomExport.objects.get(study=study).sr_file.name
    assert default_storage.exists(name)
    with django_capture_on_commit_callbacks(execute=True):
        delete_study(study=study, user=admin_user, reason="test")
    assert not default_storage.exists(name) and not DicomExport.objects.exists()


# --- status: the API and the admin ---------------------------------------------------------------------------


def test_readers_see_the_export_status_on_the_case_and_api_clients_do_not(
    radiologist, api_client_user, settings, rad_api, api, client, eager, django_capture_on_commit_callbacks
):
    settings.PORTAL_DICOM_EXPORT_MAX_ATTEMPTS = 1
    settings.PORTAL_DICOM_DESTINATIONS = [("PACS", "127.0.0.1", free_port())]
    study = ingest_study(user=api_client_user)  # the client's own upload: it sees the study
    with django_capture_on_commit_callbacks(execute=True):
        decide(study, radiologist)
    [export] = rad_api.get(f"/api/v1/studies/{study.pk}/").json()["exports"]
    assert export["kind"] == "decision" and export["status"] == "failed" and "could not connect" in export["error"]
    as_client = api.get(f"/api/v1/studies/{study.pk}/")
    assert as_client.status_code == 200 and "exports" not in as_client.json()
    client.force_login(radiologist)
    page = client.get(f"/studies/{study.pk}/").content.decode()
    assert "Sent to the PACS" in page and "<strong>Failed</strong>" in page and "could not connect" in page


def test_send_again_in_the_admin_requeues_a_failed_export_and_is_audited(
    radiologist, admin_user, settings, pacs, eager, django_capture_on_commit_callbacks
):
    settings.PORTAL_DICOM_EXPORT_MAX_ATTEMPTS = 1
    ae_title, port, folder = pacs
    down = free_port()
    settings.PORTAL_DICOM_DESTINATIONS = [(ae_title, "127.0.0.1", down)]
    study = ingest_study()
    with django_capture_on_commit_callbacks(execute=True):
        decide(study, radiologist)
    export = DicomExport.objects.get(study=study)
    assert export.status == "failed"
    DicomExport.objects.filter(pk=export.pk).update(destination=f"{ae_title}@127.0.0.1:{port}")  # the PACS is back

    request = RequestFactory().post("/admin/")
    request.user = admin_user
    model_admin = DicomExportAdmin(DicomExport, site)
    model_admin.message_user = lambda *args, **kwargs: None
    with django_capture_on_commit_callbacks(execute=True):
        model_admin.send_again(request, DicomExport.objects.all())

    export.refresh_from_db()
    assert (export.status, export.attempts, export.error) == ("sent", 1, "")
    assert len(list(folder.iterdir())) == 1
    event = AuditEvent.objects.get(action="dicom_export_resend")
    assert event.user == admin_user and event.study_id == study.pk and event.detail["was"] == "failed"


# --- the setting ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["PACS", "PACS@host", "PACS@host:0", "PACS@host:99999", "@host:104", "MUCH_TOO_LONG_AE_TITLE@h:104"]
)
def test_a_malformed_destination_setting_fails_fast(monkeypatch, value):
    from portal.settings import _dicom_destinations

    monkeypatch.setenv("PORTAL_DICOM_DESTINATIONS", value)
    with pytest.raises(ImproperlyConfigured, match="AE_TITLE@HOST:PORT"):
        _dicom_destinations("PORTAL_DICOM_DESTINATIONS")


def test_the_destination_setting_lists_ae_host_and_port(monkeypatch):
    from portal.settings import _dicom_destinations

    monkeypatch.setenv("PORTAL_DICOM_DESTINATIONS", "PACS@127.0.0.1:4242, ARCHIVE@pacs.example.org:104")
    assert _dicom_destinations("PORTAL_DICOM_DESTINATIONS") == [
        ("PACS", "127.0.0.1", 4242),
        ("ARCHIVE", "pacs.example.org", 104),
    ]
