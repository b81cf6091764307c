"""The SRs a PACS accepts (issue 23): dciodvfy (Debian dicom3tools) finds no error and no warning in any
SR the portal makes or in its pseudonymised copies; every BI-RADS category has a code meaning a PACS
takes; standard codes only (no undeclared private scheme); one series per kind of SR; an AI-result
SR superseded by a new instance when more images arrive; explicit VR little endian."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from screening.ai.services import predicting
from screening.exchange import sr
from screening.exchange.services import export as export_service
from screening.intake.selectors import pseudonym
from screening.intake.services.ingest import ingest_file
from screening.models import DicomExport, Study
from screening.reading.services.reviews import review_submit
from tests.dicom_factory import mg_dataset, to_bytes
from tests.portal import test_dicom_sr
from tests.portal.test_dicom_sr import content_items

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (Debian dicom3tools) is not installed"),
]

model, pacs = test_dicom_sr.model, test_dicom_sr.pacs  # their fixtures: the fake model, dcmtk's storescp


def dciodvfy(path: Path) -> list[str]:
    """dciodvfy's errors and warnings about a file (its other lines name the IOD and modules)."""
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (result.stdout + result.stderr).splitlines() if line.startswith(("Error", "Warning"))]


def source(laterality: str, study_uid: str):
    """An MG image whose study attributes a DICOMDIR needs are filled in (the SR copies them): whatever
    dciodvfy then says of an SR is about the SR."""
    ds = mg_dataset(laterality=laterality, study_uid=study_uid)
    ds.StudyTime, ds.StudyID, ds.ReferringPhysicianName = "101500", "S1", ""
    return ds


def arrive(laterality: str, study_uid: str, *, predict: bool = True):
    image = ingest_file(file=io.BytesIO(to_bytes(source(laterality, study_uid))), filename="x.dcm").image
    if predict:
        predicting.run_prediction(image.predictions.get().pk)
    return image


def saved(document, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    document.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize("birads", [0, 1, 2, 3, 4, 5, 6])
def test_every_birads_category_makes_a_decision_sr_that_dciodvfy_passes(radiologist, tmp_path, birads):
    """BI-RADS 0 and 5 had SNOMED names of 72 and 69 characters: a PACS refused the SR."""
    study_uid = generate_uid()
    arrive("L", study_uid, predict=False)
    study = Study.objects.get(study_uid=study_uid)
    decision = "normal" if birads in (1, 2) else "abnormal"
    review = review_submit(study=study, radiologist=radiologist, decision=decision, birads=birads)
    path = saved(sr.decision_sr(review), tmp_path, "decision.dcm")
    ds = dcmread(path)
    assert all(
        len(item.ConceptCodeSequence[0].CodeMeaning) <= 64
        for item in content_items(ds)
        if "ConceptCodeSequence" in item
    )
    assert dciodvfy(path) == []
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian


def test_the_ai_result_sr_uses_standard_codes_only_and_dciodvfy_passes(model, tmp_path):
    """Its private 99SCREEN codes made dciodvfy warn (49 warnings for a four-image study), declared or not."""
    study_uid = generate_uid()
    arrive("L", study_uid)
    arrive("R", study_uid)
    study = Study.objects.get(study_uid=study_uid)
    path = saved(sr.ai_result_sr(study), tmp_path, "ai.dcm")
    ds = dcmread(path)
    schemes = {
        code[0].CodingSchemeDesignator
        for item in content_items(ds)
        for code in (item.get("ConceptNameCodeSequence"), item.get("ConceptCodeSequence"))
        if code
    }
    assert schemes <= {"DCM", "SCT", "UCUM", "RFC5646"}  # RFC5646: the language of the content
    flags = [
        item.ConceptCodeSequence[0].CodeValue
        for item in content_items(ds)
        if item.ValueType == "CODE" and item.ConceptNameCodeSequence[0].CodeValue == "111056"  # Rendering Intent
    ]
    assert flags == ["111150" if study.exam_flag else "111151"]
    assert dciodvfy(path) == []
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian


def test_each_kind_of_sr_has_its_own_series(model, radiologist):
    study_uid = generate_uid()
    arrive("L", study_uid)
    study = Study.objects.get(study_uid=study_uid)
    ai = sr.ai_result_sr(study)
    first = review_submit(study=study, radiologist=radiologist, decision="abnormal", birads=4)
    second = review_submit(study=study, radiologist=radiologist, decision="normal", birads=1)
    decisions = [sr.decision_sr(first), sr.decision_sr(second)]
    assert ai.SeriesInstanceUID != decisions[0].SeriesInstanceUID == decisions[1].SeriesInstanceUID
    assert (ai.SeriesNumber, ai.SeriesDescription) == (sr.SERIES_NUMBERS[sr.AI], "AI result")
    assert {(d.SeriesNumber, d.SeriesDescription) for d in decisions} == {
        (sr.SERIES_NUMBERS[sr.DECISION], "Radiologist decision")
    }
    assert [d.InstanceNumber for d in decisions] == [1, 2]


def test_an_ai_sr_is_superseded_by_a_new_instance_when_more_images_arrive(model, settings, pacs):
    """Issue 23: an AI SR sent after one of the images stayed stale when the others arrived."""
    ae_title, port, folder = pacs
    settings.PORTAL_DICOM_DESTINATIONS = [(ae_title, "127.0.0.1", port)]
    settings.PORTAL_DICOM_EXPORT_STABLE_SECONDS = 0
    study_uid = generate_uid()
    arrive("L", study_uid)
    [first] = DicomExport.objects.filter(kind="ai")
    assert export_service.send_export(first.pk) == "sent"

    arrive("R", study_uid)  # after the PACS has the SR of the left image
    newer = DicomExport.objects.filter(kind="ai").exclude(pk=first.pk)
    [second] = newer
    assert second.sop_instance_uid != first.sop_instance_uid
    assert export_service.send_export(second.pk) == "sent"
    received = {ds.SOPInstanceUID: ds for ds in map(dcmread, folder.iterdir())}
    assert set(received) == {first.sop_instance_uid, second.sop_instance_uid}
    latest = received[second.sop_instance_uid]
    evidence = [
        ref.ReferencedSOPInstanceUID
        for series in latest.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
        for ref in series.ReferencedSOPSequence
    ]
    assert len(evidence) == 2  # both images
    predecessor = latest.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert predecessor.ReferencedSOPInstanceUID == first.sop_instance_uid
    assert latest.InstanceNumber == 2 and latest.SeriesInstanceUID == received[first.sop_instance_uid].SeriesInstanceUID


def test_an_unsent_ai_sr_is_replaced_not_kept_when_another_image_is_predicted(model, settings, pacs):
    ae_title, port, _ = pacs
    settings.PORTAL_DICOM_DESTINATIONS = [(ae_title, "127.0.0.1", port)]
    study_uid = generate_uid()
    arrive("L", study_uid)
    arrive("R", study_uid)
    [export] = DicomExport.objects.filter(kind="ai")
    assert export.sop_instance_uid == sr.ai_result_uid(export.study, model)


def test_a_pseudonymised_copy_of_an_sr_declares_its_deidentification_and_dciodvfy_passes(
    model, api, api_client_user, settings, monkeypatch, tmp_path, media_root
):
    monkeypatch.setattr(export_service, "c_store", lambda label, content: None)
    settings.PORTAL_DICOM_DESTINATIONS = [("PACS", "127.0.0.1", 104)]
    settings.PORTAL_DICOM_EXPORT_STABLE_SECONDS = 0
    study_uid = generate_uid()
    for laterality in ("L", "R"):
        ds = source(laterality, study_uid)
        image = ingest_file(file=io.BytesIO(to_bytes(ds)), filename="x.dcm", user=api_client_user).image
        predicting.run_prediction(image.predictions.get().pk)
    [export] = DicomExport.objects.filter(kind="ai")
    assert export_service.send_export(export.pk) == "sent"
    study = export.study
    url = f"/dicomweb/studies/{study_uid}/series/{sr.series_uid(study, sr.AI)}/instances/{export.sop_instance_uid}"
    response = api.get(url, HTTP_ACCEPT="application/dicom")
    assert response.status_code == 200
    path = tmp_path / "copy.dcm"
    path.write_bytes(b"".join(response.streaming_content))
    copy = dcmread(path)
    assert copy.PatientID == pseudonym(study.patient.patient_id, api_client_user)
    assert copy.PatientIdentityRemoved == "YES" and copy.DeidentificationMethod
    assert {item.CodeValue for item in copy.DeidentificationMethodCodeSequence} >= {"113110"}
    assert dciodvfy(path) == []
