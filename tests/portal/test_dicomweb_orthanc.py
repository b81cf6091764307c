"""Orthanc with its DICOMweb plugin (Debian orthanc-dicomweb) as a DICOMweb client of the portal, with
its defaults: STOW-RS of a study (chunked, a 73-character boundary), QIDO-RS and a WADO-RS retrieve
into its own store, authenticated by username and password (HTTP Basic)."""

from __future__ import annotations

import io
import json

import pydicom
import pytest

from screening.intake.services.ingest import ingest_file
from screening.models import AuditEvent, Image
from tests.dicom_factory import mg_dataset, phantom, to_bytes
from tests.dicom_peers import DICOMWEB_PLUGIN, ORTHANC, orthanc

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(
        ORTHANC is None or DICOMWEB_PLUGIN is None, reason="Orthanc and orthanc-dicomweb are not installed"
    ),
]


@pytest.fixture
def pacs(live_server, radiologist, tmp_path):
    """Orthanc whose DICOMweb server "portal" is this portal, reached with a radiologist's account."""
    extra = {
        "Plugins": [DICOMWEB_PLUGIN],
        "DicomWeb": {
            "Enable": True,
            "Servers": {
                "portal": {
                    "Url": f"{live_server.url}/dicomweb/",
                    "Username": "rad",
                    "Password": "a-long-test-password",
                }
            },
        },
    }
    with orthanc(tmp_path, extra=extra) as server:
        yield server


def test_orthanc_stores_a_study_into_the_portal_with_stow_rs(pacs):
    study_uid = pydicom.uid.generate_uid()
    datasets = [
        mg_dataset(phantom(1024, 800, seed=i), study_uid=study_uid, laterality=side, seed=i)
        for i, side in enumerate("LR")
    ]
    uploaded = [pacs.post("/instances", to_bytes(ds)) for ds in datasets]
    (orthanc_study,) = {answer["ParentStudy"] for answer in uploaded}
    pacs.post("/dicom-web/servers/portal/stow", json.dumps({"Resources": [orthanc_study]}))
    stored = Image.objects.filter(study__study_uid=study_uid)
    assert sorted(stored.values_list("sop_uid", flat=True)) == sorted(ds.SOPInstanceUID for ds in datasets)
    assert AuditEvent.objects.filter(action="ingest", detail__via="stow").count() == 2


def test_orthanc_finds_and_retrieves_a_portal_study(pacs, radiologist):
    ds = mg_dataset(phantom(512, 400), patient_id="PAT-ORTHANC")
    ds.PatientName = "Orthanc^Olive"
    ds.StudyDescription = "Screening"
    image = ingest_file(file=io.BytesIO(to_bytes(ds)), user=radiologist).image
    found = pacs.post(
        "/dicom-web/servers/portal/qido",
        '{"Uri": "/studies", "Arguments": {"PatientName": "Orthanc^Olive", "00081030": ""}}',
    )
    # Orthanc gives the answer in its own shape: each element's value as text.
    assert [study["0020000D"]["Value"] for study in found] == [ds.StudyInstanceUID]
    assert found[0]["00100010"]["Value"] == "Orthanc^Olive"  # PN as stored, with its ^
    assert found[0]["00081030"]["Value"] == "Screening"

    pacs.post("/dicom-web/servers/portal/retrieve", json.dumps({"Resources": [{"Study": ds.StudyInstanceUID}]}))
    (instance,) = pacs.get("/instances")
    copy = pydicom.dcmread(io.BytesIO(pacs_file(pacs, instance)))
    assert copy.SOPInstanceUID == image.sop_uid and copy.PixelData == ds.PixelData
    assert AuditEvent.objects.filter(action="dicomweb_retrieve", user=radiologist).exists()


def pacs_file(pacs, instance: str) -> bytes:
    import requests

    response = requests.get(f"{pacs.url}/instances/{instance}/file", timeout=60)
    response.raise_for_status()
    return response.content
