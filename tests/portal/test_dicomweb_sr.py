"""The SRs the portal wrote (AI result and decision) served over DICOMweb beside the images: listed
by QIDO in their own series, retrieved by WADO-RS (instance and metadata), once each whatever the
number of destinations, and only to those who may see the study."""

from __future__ import annotations

import io

import pytest
from django.core.files.storage import default_storage
from pydicom import dcmread
from pydicom.uid import Comprehensive3DSRStorage

from screening.ai import inference
from screening.exchange import sr
from screening.exchange.services import export as export_service
from screening.exchange.web import series_uid
from screening.intake.selectors import pseudonym
from screening.intake.services.ingest import ingest_file
from screening.models import AuditEvent, DicomExport, Image, Study
from tests.conftest import _token_client, _user
from tests.dicom_factory import mg_dataset, to_bytes
from tests.eager import tasks_in_process
from tests.portal.test_dicom_sr import PeakPredictor, decide, ingest_study

pytestmark = pytest.mark.django_db


def value(dataset: dict, tag: str):
    return dataset.get(tag, {}).get("Value", [None])[0]


def values(dataset: dict, tag: str) -> list:
    return dataset.get(tag, {}).get("Value", [])


@pytest.fixture
def eager():
    """Embedded mode: tasks run in this process."""
    with tasks_in_process("screening.tasks.export_study_sr"):
        yield


@pytest.fixture
def reported(
    monkeypatch, settings, champion, eager, api_client_user, radiologist, media_root, django_capture_on_commit_callbacks
) -> Study:
    """A study sent by the API client, scored in-process and decided by the radiologist, with both SRs
    sent to two destinations (the network replaced by a recorder): four export rows, two SR files."""
    monkeypatch.setattr(inference, "_loaded", (champion.pk, PeakPredictor()))
    monkeypatch.setattr(export_service, "c_store", lambda label, content: None)
    settings.PORTAL_DICOM_DESTINATIONS = [("PACS", "127.0.0.1", 104), ("BACKUP", "127.0.0.1", 105)]
    with django_capture_on_commit_callbacks(execute=True):
        study = ingest_study(user=api_client_user)
    with django_capture_on_commit_callbacks(execute=True):
        decide(study, radiologist)
    exports = DicomExport.objects.filter(study=study)
    assert sorted(exports.values_list("kind", "status")) == [("ai", "sent")] * 2 + [("decision", "sent")] * 2
    assert exports.values("sr_file").distinct().count() == 2
    return study


def sr_uids(study: Study) -> set[str]:
    return set(DicomExport.objects.filter(study=study).values_list("sop_instance_uid", flat=True))


def test_qido_lists_the_portals_srs_once_each_in_one_series_per_kind(rad_api, reported):
    base = f"/dicomweb/studies/{reported.study_uid}"
    found = rad_api.get("/dicomweb/studies", {"StudyInstanceUID": reported.study_uid}).json()[0]
    assert values(found, "00080061") == ["MG", "SR"]
    assert (value(found, "00201206"), value(found, "00201208")) == (4, 4)  # 2 MG series + 2 SR series

    series = {value(s, "0020000E"): s for s in rad_api.get(base + "/series").json()}
    kinds = {kind: sr.series_uid(reported, kind) for kind in (sr.AI, sr.DECISION)}
    assert kinds[sr.AI] != kinds[sr.DECISION]
    for kind, uid in kinds.items():
        assert value(series[uid], "00080060") == "SR" and value(series[uid], "00201209") == 1
        assert value(series[uid], "00200011") == sr.SERIES_NUMBERS[kind]
    only_sr = rad_api.get(base + "/series", {"Modality": "SR"}).json()
    assert {value(s, "0020000E") for s in only_sr} == set(kinds.values())

    listed = [
        value(i, "00080018") for uid in kinds.values() for i in rad_api.get(f"{base}/series/{uid}/instances").json()
    ]
    assert sorted(listed) == sorted(sr_uids(reported))  # two SRs, not four rows
    everything = rad_api.get(base + "/instances").json()
    assert len(everything) == 4 and sr_uids(reported) < {value(i, "00080018") for i in everything}
    assert {value(i, "00080016") for i in everything if value(i, "00080060") == "SR"} == {Comprehensive3DSRStorage}


def test_qido_finds_studies_with_srs_by_modalities_in_study(rad_api, radiologist, reported):
    plain = ingest_file(file=io.BytesIO(to_bytes(mg_dataset(seed=9))), user=radiologist).image.study
    assert DicomExport.objects.filter(study=plain).count() == 0
    with_sr = rad_api.get("/dicomweb/studies", {"ModalitiesInStudy": "SR"}).json()
    assert [value(s, "0020000D") for s in with_sr] == [reported.study_uid]
    both = rad_api.get("/dicomweb/studies", {"ModalitiesInStudy": "MG"}).json()
    assert {value(s, "0020000D") for s in both} == {reported.study_uid, plain.study_uid}


def test_wado_returns_an_sr_byte_for_byte_with_its_metadata_and_audits_it(rad_api, reported):
    export = DicomExport.objects.filter(study=reported, kind="decision").first()
    series = sr.series_uid(reported, sr.DECISION)
    url = f"/dicomweb/studies/{reported.study_uid}/series/{series}/instances/{export.sop_instance_uid}"
    response = rad_api.get(url, HTTP_ACCEPT="application/dicom")
    assert response.status_code == 200 and response["Content-Type"] == "application/dicom"
    with default_storage.open(export.sr_file.name, "rb") as fh:
        assert b"".join(response.streaming_content) == fh.read()  # byte for byte
    event = AuditEvent.objects.filter(action="dicomweb_retrieve", study=reported).latest("pk")
    assert event.detail == {"what": "instances", "images": [], "srs": [export.sop_instance_uid]}

    metadata = rad_api.get(url + "/metadata").json()[0]
    assert value(metadata, "00080018") == export.sop_instance_uid
    assert value(metadata, "00080016") == Comprehensive3DSRStorage and value(metadata, "00080060") == "SR"
    assert "0040A730" in metadata  # the content tree
    assert rad_api.get(url + "/frames/1").status_code == 404
    assert rad_api.get(url + "/rendered").status_code == 404

    # The whole study: the two images and the two SRs, once each.
    study = rad_api.get(f"/dicomweb/studies/{reported.study_uid}")
    assert b"".join(study.streaming_content).count(b"Content-Type: application/dicom") == 4


def test_the_ai_sr_over_wado_refers_to_the_ingested_instances(rad_api, reported):
    export = DicomExport.objects.filter(study=reported, kind="ai").first()
    series = sr.series_uid(reported, sr.AI)
    url = f"/dicomweb/studies/{reported.study_uid}/series/{series}/instances/{export.sop_instance_uid}"
    response = rad_api.get(url, HTTP_ACCEPT="application/dicom")
    document = dcmread(io.BytesIO(b"".join(response.streaming_content)))
    referenced = {
        item.ReferencedSOPInstanceUID
        for evidence in document.CurrentRequestedProcedureEvidenceSequence
        for series in evidence.ReferencedSeriesSequence
        for item in series.ReferencedSOPSequence
    }
    assert referenced == set(Image.objects.filter(study=reported).values_list("sop_uid", flat=True))


def test_an_api_client_gets_its_studys_srs_under_its_pseudonym_and_another_clients_get_404(
    api, api_client_user, django_user_model, reported
):
    export = DicomExport.objects.filter(study=reported, kind="ai").first()
    series = sr.series_uid(reported, sr.AI)
    url = f"/dicomweb/studies/{reported.study_uid}/series/{series}/instances/{export.sop_instance_uid}"
    copy = dcmread(io.BytesIO(b"".join(api.get(url, HTTP_ACCEPT="application/dicom").streaming_content)))
    assert copy.SOPInstanceUID == export.sop_instance_uid
    assert copy.PatientID == pseudonym(reported.patient.patient_id, api_client_user) and str(copy.PatientName) == ""
    metadata = api.get(url + "/metadata").json()[0]
    assert value(metadata, "00100020") == pseudonym(reported.patient.patient_id, api_client_user)

    other = _token_client(_user(django_user_model, "other-bridge", "api_client"))
    assert other.get(url).status_code == 404
    assert other.get(url + "/metadata").status_code == 404
    assert other.get(f"/dicomweb/studies/{reported.study_uid}/series").status_code == 404
    assert other.get("/dicomweb/studies", {"ModalitiesInStudy": "SR"}).json() == []


def test_an_image_series_is_not_mistaken_for_the_sr_series(rad_api, reported):
    image = Image.objects.filter(study=reported).first()
    assert series_uid(image) not in (sr.series_uid(reported, sr.AI), sr.series_uid(reported, sr.DECISION))
    listed = rad_api.get(f"/dicomweb/studies/{reported.study_uid}/series/{series_uid(image)}/instances").json()
    assert [value(i, "00080018") for i in listed] == [image.sop_uid]
