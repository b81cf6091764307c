"""The portal's SRs reach a real PACS: Orthanc (started on a temporary configuration) is the
destination; the AI-result SR and the decision SR arrive there and reference the ingested instances."""

from __future__ import annotations

import json

import pytest

from screening.ai import inference
from screening.models import DicomDestination, DicomExport, Image
from tests.dicom_peers import ORTHANC, orthanc
from tests.eager import tasks_in_process
from tests.portal.test_dicom_sr import PeakPredictor, decide, ingest_study

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(ORTHANC is None, reason="Orthanc (Debian package orthanc) is not installed"),
]


@pytest.fixture
def eager():
    """Embedded mode: tasks (prediction, export) run in this process."""
    with tasks_in_process("screening.tasks.export_study_sr"):
        yield


def evidence(tags: dict) -> set[str]:
    """The SOP Instance UIDs an SR's evidence sequence references (Orthanc's simplified tags)."""
    return {
        item["ReferencedSOPInstanceUID"]
        for study in tags.get("CurrentRequestedProcedureEvidenceSequence", [])
        for series in study.get("ReferencedSeriesSequence", [])
        for item in series.get("ReferencedSOPSequence", [])
    }


def test_both_srs_arrive_in_orthanc_and_reference_the_ingested_instances(
    tmp_path, monkeypatch, champion, eager, radiologist, media_root, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(inference, "_loaded", (champion.pk, PeakPredictor()))
    with orthanc(tmp_path) as pacs:
        DicomDestination.objects.create(ae_title="ORTHANC", host="127.0.0.1", port=pacs.dicom_port)
        with django_capture_on_commit_callbacks(execute=True):
            study = ingest_study()
        with django_capture_on_commit_callbacks(execute=True):
            decide(study, radiologist)

        exports = list(DicomExport.objects.filter(study=study).order_by("pk"))
        assert [(e.kind, e.status, e.error) for e in exports] == [("ai", "sent", ""), ("decision", "sent", "")]
        found = pacs.post("/tools/find", json.dumps({"Level": "Instance", "Query": {"Modality": "SR"}}))
        arrived = {tags["SOPInstanceUID"]: tags for tags in (pacs.get(f"/instances/{i}/tags?simplify") for i in found)}

    ai, decision = exports
    assert set(arrived) == {ai.sop_instance_uid, decision.sop_instance_uid}
    ingested = set(Image.objects.filter(study=study).values_list("sop_uid", flat=True))
    assert len(ingested) == 2
    for tags in arrived.values():
        assert tags["StudyInstanceUID"] == study.study_uid
        assert tags["SOPClassUID"] == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert evidence(arrived[ai.sop_instance_uid]) == ingested  # the AI result rests on both views
    left = Image.objects.get(study=study, laterality="L").sop_uid
    assert left in evidence(arrived[decision.sop_instance_uid]) <= ingested  # findings marked on the left view
