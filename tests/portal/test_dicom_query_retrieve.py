"""The Query/Retrieve SCP of the DICOM receiver against dcmtk's findscu, getscu and movescu (with dcmtk's
storescp as the move destination): C-FIND at every level of Study Root and Patient Root, C-GET and
C-MOVE of images and SRs, under the roles and pseudonyms of the peer's portal account, audited.

The receiver runs in a thread of the test process (a transactional test: the server thread has its own
database connection), as in test_dicom_receiver.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import JPEG2000Lossless, generate_uid

from screening import dispatch
from screening.exchange import qr_model, receiver, sr
from screening.exchange.services import export as export_service
from screening.intake.selectors import pseudonym
from screening.intake.services.ingest import ingest_file
from screening.models import AuditEvent, DicomDestination, DicomExport, DicomPeer, Image, Study
from screening.reading.services.reviews import review_submit
from tests.dicom_factory import mg_dataset, to_bytes
from tests.dicom_peers import ORTHANC, orthanc

BIN = "/usr/bin:/usr/local/bin"  # dcmtk's tools, not pynetdicom's same-named scripts in the virtualenv
FINDSCU, GETSCU, MOVESCU, STORESCP = (
    shutil.which(tool, path=BIN) for tool in ("findscu", "getscu", "movescu", "storescp")
)

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(not (FINDSCU and GETSCU and MOVESCU and STORESCP), reason="dcmtk is not installed"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def port(settings, media_root):
    settings.PORTAL_DICOM_ALLOWED_AES = [("MODALITY1", "127.0.0.1")]  # a modality: it may only store
    server = receiver.start(port=0, ae_title="SCREENING", host="127.0.0.1", block=False)
    yield server.server_address[1]
    server.shutdown()


@pytest.fixture
def archive(monkeypatch, settings, radiologist, api_client_user):
    """Two studies: one received from a modality (a J2K-compressed left CC and a right CC, and the SR of a
    decision), one uploaded by the API client. Returns (received study, uploaded study)."""
    monkeypatch.setattr("screening.intake.services.ingest.enqueue_images", lambda image_ids: [])
    monkeypatch.setattr(dispatch, "after_commit", lambda *args, **kwargs: None)
    monkeypatch.setattr(export_service, "c_store", lambda label, content: None)
    settings.PORTAL_DICOM_DESTINATIONS = [("ARCHIVE", "127.0.0.1", 104)]
    study_uid = generate_uid()
    left = mg_dataset(laterality="L", study_uid=study_uid, patient_id="PAT-QR", seed=1)
    left.PatientName = "Doe^Jane"
    left.compress(JPEG2000Lossless)
    right = mg_dataset(laterality="R", study_uid=study_uid, patient_id="PAT-QR", seed=2)
    right.PatientName = "Doe^Jane"
    for ds in (left, right):
        ds.StudyDescription = "Screening mammography"
        ingest_file(file=io.BytesIO(to_bytes(ds)), filename="x.dcm")
    received = Study.objects.get(study_uid=study_uid)
    review = review_submit(study=received, radiologist=radiologist, decision="abnormal", birads=0)
    [export] = DicomExport.objects.filter(review=review)
    assert export_service.send_export(export.pk) == "sent"
    uploaded = ingest_file(
        file=io.BytesIO(to_bytes(mg_dataset(patient_id="PAT-OWN", seed=3))), filename="x.dcm", user=api_client_user
    ).image.study
    DicomPeer.objects.create(ae_title="WORKSTATION", host="127.0.0.1", query_user=radiologist)
    DicomPeer.objects.create(ae_title="BRIDGE", host="127.0.0.1", query_user=api_client_user)
    return received, uploaded


def run(tool: str, port: int, *args: str, aet: str = "WORKSTATION", cwd: Path | None = None) -> str:
    result = subprocess.run(
        [tool, "-v", *args, "-aet", aet, "-aec", "SCREENING", "127.0.0.1", str(port)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )
    return result.stdout + result.stderr


def find(port: int, tmp_path: Path, *keys: str, root: str = "-S", aet: str = "WORKSTATION") -> tuple[list, str]:
    """findscu's matches (written by -X as rsp*.dcm) and its log."""
    folder = tmp_path / f"find-{time.monotonic_ns()}"
    folder.mkdir()
    options = [key for key in keys if key.startswith("-")]
    args = [root, "-X", *options, *[a for key in keys if not key.startswith("-") for a in ("-k", key)]]
    log = run(FINDSCU, port, *args, aet=aet, cwd=folder)
    return [dcmread(path) for path in sorted(folder.glob("rsp*.dcm"))], log


def test_study_root_c_find_matches_names_with_wildcards_and_answers_the_keys_asked(port, archive, tmp_path):
    received, uploaded = archive
    keys = ["QueryRetrieveLevel=STUDY", "PatientName=doe*", "PatientID", "StudyInstanceUID", "ModalitiesInStudy"]
    [match], log = find(port, tmp_path, *keys, "NumberOfStudyRelatedInstances", "StudyDescription")
    assert match.StudyInstanceUID == received.study_uid, log
    assert match.PatientID == "PAT-QR" and str(match.PatientName) == "Doe^Jane"  # as stored, with its ^
    [exact], _ = find(port, tmp_path, "QueryRetrieveLevel=STUDY", "PatientName=DOE^JANE", "StudyInstanceUID")
    assert exact.StudyInstanceUID == received.study_uid  # PN: case-insensitive, components by ^
    assert list(match.ModalitiesInStudy) == ["MG", "SR"]
    assert match.NumberOfStudyRelatedInstances == 3 and match.StudyDescription == "Screening mammography"
    every, _ = find(port, tmp_path, "QueryRetrieveLevel=STUDY", "StudyInstanceUID")
    assert {m.StudyInstanceUID for m in every} == {received.study_uid, uploaded.study_uid}  # a reader sees all
    none, _ = find(port, tmp_path, "QueryRetrieveLevel=STUDY", "PatientID=PAT-Q?", "StudyInstanceUID")
    assert [m.StudyInstanceUID for m in none] == [received.study_uid]
    event = AuditEvent.objects.filter(action="dicom_query").latest("pk")
    assert event.user.username == "rad" and event.detail["calling_ae"] == "WORKSTATION"
    assert event.detail["level"] == "STUDY" and event.detail["matches"] == 1


def test_series_and_image_level_list_the_images_and_the_sr(port, archive, tmp_path):
    received, _ = archive
    series, log = find(
        port,
        tmp_path,
        "QueryRetrieveLevel=SERIES",
        f"StudyInstanceUID={received.study_uid}",
        "SeriesInstanceUID",
        "Modality",
        "NumberOfSeriesRelatedInstances",
    )
    assert sorted(s.Modality for s in series) == ["MG", "MG", "SR"], log
    [report_series] = [s for s in series if s.Modality == "SR"]
    assert report_series.SeriesInstanceUID == sr.series_uid(received, sr.DECISION)
    images, log = find(
        port,
        tmp_path,
        "QueryRetrieveLevel=IMAGE",
        f"StudyInstanceUID={received.study_uid}",
        f"SeriesInstanceUID={report_series.SeriesInstanceUID}",
        "SOPInstanceUID",
        "SOPClassUID",
    )
    export = DicomExport.objects.get(study=received)
    assert [(i.SOPInstanceUID, i.SOPClassUID) for i in images] == [
        (export.sop_instance_uid, sr.Comprehensive3DSRStorage)
    ]
    mg, _ = find(
        port,
        tmp_path,
        "QueryRetrieveLevel=IMAGE",
        f"StudyInstanceUID={received.study_uid}",
        "Modality=MG",
        "SOPInstanceUID",
        "ImageLaterality",
    )
    assert sorted(i.ImageLaterality for i in mg) == ["L", "R"]


def test_patient_root_finds_patients_then_their_studies(port, archive, tmp_path):
    received, _ = archive
    [patient], log = find(
        port,
        tmp_path,
        "QueryRetrieveLevel=PATIENT",
        "PatientID=PAT-QR",
        "PatientName",
        "NumberOfPatientRelatedStudies",
        root="-P",
    )
    assert str(patient.PatientName).replace(" ", "^") == "Doe^Jane", log
    assert patient.NumberOfPatientRelatedStudies == 1
    [study], _ = find(port, tmp_path, "QueryRetrieveLevel=STUDY", "PatientID=PAT-QR", "StudyInstanceUID", root="-P")
    assert study.StudyInstanceUID == received.study_uid
    refused, log = find(port, tmp_path, "-d", "QueryRetrieveLevel=PATIENT", "PatientID")  # not in Study Root
    assert refused == [] and "DIMSE Status                  : 0xa900" in log, log
    assert "[QueryRetrieveLevel PATIENT is not supported here]" in log  # the Error Comment


def test_a_peer_whose_account_is_deactivated_is_refused_and_an_unreadable_level_answers_why(
    port, archive, tmp_path, radiologist
):
    radiologist.is_active = False
    radiologist.save()
    matches, log = find(port, tmp_path, "-d", "QueryRetrieveLevel=STUDY", "StudyInstanceUID")
    assert matches == [] and "DIMSE Status                  : 0x0124" in log, log
    radiologist.is_active = True
    radiologist.save()
    matches, log = find(port, tmp_path, "-d", "QueryRetrieveLevel=SERIES", "SeriesInstanceUID")
    assert matches == [] and "LO [SERIES level needs the StudyInstanceUID" in log, log  # its Error Comment
    refusal = AuditEvent.objects.filter(action="dicom_qr_refused").latest("pk")
    assert refusal.user == radiologist and refusal.detail["reason"] == "SERIES level needs the StudyInstanceUID"


def test_an_api_clients_peer_finds_only_its_uploads_under_its_pseudonym(port, archive, tmp_path, api_client_user):
    received, uploaded = archive
    [match], log = find(
        port,
        tmp_path,
        "QueryRetrieveLevel=STUDY",
        "StudyInstanceUID",
        "PatientID",
        "PatientName",
        "PatientBirthDate",
        aet="BRIDGE",
    )
    assert match.StudyInstanceUID == uploaded.study_uid, log
    assert match.PatientID == pseudonym("PAT-OWN", api_client_user)
    assert str(match.PatientName) == "" and str(match.PatientBirthDate) == ""
    [gated], _ = find(
        port, tmp_path, "QueryRetrieveLevel=STUDY", "StudyInstanceUID", "AccessionNumber", "StudyDescription",
        aet="BRIDGE",
    )  # fmt: skip
    assert (gated.AccessionNumber, gated.StudyDescription) == ("", "")  # QIDO's rule: identity only
    by_accession, _ = find(port, tmp_path, "QueryRetrieveLevel=STUDY", "AccessionNumber=ACC1", aet="BRIDGE")
    assert by_accession == []
    by_real_id, _ = find(port, tmp_path, "QueryRetrieveLevel=STUDY", "PatientID=PAT-OWN", aet="BRIDGE")
    assert by_real_id == []  # its identity is not the client's to search by


def test_a_store_only_peer_is_refused_with_a_reason_and_audited(port, archive, tmp_path):
    matches, log = find(port, tmp_path, "-d", "QueryRetrieveLevel=STUDY", "StudyInstanceUID", aet="MODALITY1")
    assert matches == [] and "DIMSE Status                  : 0x0124" in log, log  # Refused: Not Authorised
    assert "it has no Query/Retrieve account" in log  # the Error Comment
    event = AuditEvent.objects.get(action="dicom_qr_refused")
    assert event.detail["calling_ae"] == "MODALITY1" and event.detail["service"] == "C-FIND"


def test_c_get_returns_the_study_images_and_sr_decompressing_what_the_peer_did_not_accept(port, archive, tmp_path):
    received, _ = archive
    folder = tmp_path / "got"
    folder.mkdir()
    log = run(
        GETSCU,
        port,
        "-S",
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        f"StudyInstanceUID={received.study_uid}",
        "-od",
        str(folder),
    )
    got = {ds.SOPInstanceUID: ds for ds in map(dcmread, folder.iterdir())}
    expected = set(Image.objects.filter(study=received).values_list("sop_uid", flat=True))
    expected.add(DicomExport.objects.get(study=received).sop_instance_uid)
    assert set(got) == expected, log
    left = got[Image.objects.get(study=received, laterality="L").sop_uid]
    assert not left.file_meta.TransferSyntaxUID.is_compressed  # stored as JPEG 2000; getscu asked for uncompressed
    assert left.pixel_array.shape == (256, 200)
    event = AuditEvent.objects.get(action="dicom_retrieve")
    assert event.study_id == received.pk and event.detail["service"] == "C-GET" and len(event.detail["images"]) == 2
    assert event.detail["srs"] == [DicomExport.objects.get(study=received).sop_instance_uid]


def test_c_get_by_an_api_clients_peer_gets_pseudonymised_copies_and_nothing_else(
    port, archive, tmp_path, api_client_user
):
    received, uploaded = archive
    folder = tmp_path / "got"
    folder.mkdir()
    for study in (uploaded, received):
        run(
            GETSCU,
            port,
            "-S",
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            f"StudyInstanceUID={study.study_uid}",
            "-od",
            str(folder),
            aet="BRIDGE",
        )
    [copy] = [dcmread(path) for path in folder.iterdir()]
    assert copy.StudyInstanceUID == uploaded.study_uid
    assert copy.PatientID == pseudonym("PAT-OWN", api_client_user) and str(copy.PatientName) == ""
    assert copy.PatientIdentityRemoved == "YES" and copy.DeidentificationMethod
    # dciodvfy on the copy: the synthetic source lacks attributes of the MG IOD (its own errors), but nothing
    # the pseudonymisation wrote or emptied is wrong.
    if shutil.which("dciodvfy"):
        result = subprocess.run(["dciodvfy", str(next(folder.iterdir()))], capture_output=True, text=True, timeout=60)
        ours = re.compile(r"Patient ?Identity|De-?identification|Patient ?(Name|ID|Birth)|Patient>", re.IGNORECASE)
        complaints = [line for line in result.stderr.splitlines() if line.startswith(("Error", "Warning"))]
        assert complaints and not [line for line in complaints if ours.search(line)], complaints


def start_storescp(tmp_path: Path, ae_title: str, *options: str):
    port, folder = free_port(), tmp_path / f"moved-{ae_title}"
    folder.mkdir()
    command = [STORESCP, *options, "-aet", ae_title, "-od", str(folder), str(port)]
    return port, folder, subprocess.Popen(command, stderr=subprocess.PIPE)


@pytest.fixture
def destination(tmp_path):
    """dcmtk's storescp (uncompressed transfer syntaxes only), registered as a destination: (AE, folder)."""
    port, folder, process = start_storescp(tmp_path, "VIEWER")
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                break
            except OSError:
                time.sleep(0.05)
        DicomDestination.objects.create(ae_title="VIEWER", host="127.0.0.1", port=port)
        yield "VIEWER", folder
    finally:
        process.terminate()
        process.wait(10)


def test_c_move_sends_a_series_to_a_registered_destination(port, archive, destination, tmp_path):
    received, _ = archive
    ae_title, folder = destination
    left = Image.objects.get(study=received, laterality="L")
    from screening.exchange.web import series_uid

    log = run(
        MOVESCU,
        port,
        "-S",
        "-aem",
        ae_title,
        "-k",
        "QueryRetrieveLevel=SERIES",
        "-k",
        f"StudyInstanceUID={received.study_uid}",
        "-k",
        f"SeriesInstanceUID={series_uid(left)}",
    )
    [moved] = [dcmread(path) for path in folder.iterdir()]
    assert moved.SOPInstanceUID == left.sop_uid and not moved.file_meta.TransferSyntaxUID.is_compressed, log
    event = AuditEvent.objects.get(action="dicom_retrieve")
    assert event.detail["destination"] == ae_title and event.detail["images"] == [left.pk]


def test_c_move_keeps_a_compressed_original_as_stored_where_the_destination_accepts_it(port, archive, tmp_path):
    received, _ = archive
    dest_port, folder, process = start_storescp(tmp_path, "J2KVIEWER", "+xa")  # accepts every transfer syntax
    try:
        DicomDestination.objects.create(ae_title="J2KVIEWER", host="127.0.0.1", port=dest_port)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", dest_port), 0.5).close()
                break
            except OSError:
                time.sleep(0.05)
        left = Image.objects.get(study=received, laterality="L")
        log = run(
            MOVESCU, port, "-S", "-aem", "J2KVIEWER", "-k", "QueryRetrieveLevel=IMAGE",
            "-k", f"StudyInstanceUID={received.study_uid}", "-k", f"SOPInstanceUID={left.sop_uid}",
        )  # fmt: skip
    finally:
        process.terminate()
        process.wait(10)
    [moved] = [dcmread(path) for path in folder.iterdir()]
    assert moved.SOPInstanceUID == left.sop_uid and moved.file_meta.TransferSyntaxUID == JPEG2000Lossless, log


def test_c_move_to_an_unknown_destination_or_by_wildcard_sends_nothing(port, archive, destination, tmp_path):
    received, _ = archive
    _, folder = destination
    log = run(
        MOVESCU,
        port,
        "-S",
        "-aem",
        "ELSEWHERE",
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        f"StudyInstanceUID={received.study_uid}",
    )
    assert "Refused: MoveDestinationUnknown" in log, log
    log = run(MOVESCU, port, "-d", "-S", "-aem", "VIEWER", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=*")
    assert "not wildcards" in log, log
    assert list(folder.iterdir()) == []
    assert not AuditEvent.objects.filter(action="dicom_retrieve").exists()
    assert AuditEvent.objects.filter(action="dicom_qr_refused").count() == 2


def test_the_portals_own_sr_sent_back_is_accepted_and_another_sr_is_refused_with_a_reason(port, archive, tmp_path):
    received, _ = archive
    export = DicomExport.objects.get(study=received)
    storescu = shutil.which("storescu", path=BIN)
    with export.sr_file.open("rb") as fh:
        own = dcmread(fh)
    own_path, other_path = tmp_path / "own.dcm", tmp_path / "other.dcm"
    own.save_as(own_path)
    own.SOPInstanceUID = generate_uid()
    own.file_meta.MediaStorageSOPInstanceUID = own.SOPInstanceUID
    own.save_as(other_path)
    result = subprocess.run(
        [storescu, "-v", "-d", "-R", "-aet", "MODALITY1", "-aec", "SCREENING", "127.0.0.1", str(port)]
        + [str(own_path), str(other_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    log = result.stdout + result.stderr
    statuses = re.findall(r"DIMSE Status +: (0x[0-9a-f]{4})", log)
    assert statuses == ["0x0000", "0xa900"], log  # its own: held already; another: refused
    assert "its own SRs only" in log, log


@pytest.mark.skipif(ORTHANC is None, reason="Orthanc (Debian package orthanc) is not installed")
def test_orthanc_finds_and_moves_a_study_from_the_portal_then_forwards_it_back_sr_included(
    port, archive, tmp_path, radiologist
):
    """Orthanc as the hospital PACS: C-FIND and C-MOVE (to itself) from the portal, then C-STORE of the
    whole study, the portal's SR included, back to the portal (issue 23: "Cannot transcode ... to one of
    [ ]", the portal accepted no SR)."""
    received, _ = archive
    with orthanc(tmp_path, {"portal": ("SCREENING", "127.0.0.1", port)}) as pacs:
        DicomPeer.objects.create(ae_title="ORTHANC", host="127.0.0.1", query_user=radiologist)
        DicomDestination.objects.create(ae_title="ORTHANC", host="127.0.0.1", port=pacs.dicom_port)
        query = pacs.post(
            "/modalities/portal/query",
            json.dumps({"Level": "Study", "Query": {"StudyInstanceUID": received.study_uid, "PatientName": ""}}),
        )
        answers = pacs.get(f"/queries/{query['ID']}/answers?expand&simplify")
        assert [a["StudyInstanceUID"] for a in answers] == [received.study_uid]
        assert answers[0]["PatientName"].replace(" ", "^") == "Doe^Jane"
        pacs.post(f"/queries/{query['ID']}/retrieve", json.dumps({"TargetAet": "ORTHANC", "Synchronous": True}))
        held = pacs.get("/instances?expand")
        modalities = sorted(pacs.get(f"/instances/{i['ID']}/tags?simplify")["Modality"] for i in held)
        assert modalities == ["MG", "MG", "SR"]
        [study] = pacs.get("/studies")
        job = pacs.post("/modalities/portal/store", json.dumps({"Resources": [study], "Synchronous": True}))
    assert job["InstancesCount"] == 3 and job["FailedInstancesCount"] == 0, job
    moved = AuditEvent.objects.get(action="dicom_retrieve")
    assert moved.detail["service"] == "C-MOVE" and moved.detail["destination"] == "ORTHANC"
    assert Image.objects.filter(study=received).count() == 2  # held already: stored once


def test_an_api_client_gets_no_decision_sr_over_dimse_or_dicomweb(port, archive, tmp_path, radiologist, api):
    """Decisions, notes and reader names are not an API client's (selectors.study_detail): neither is the
    decision SR, which names the reader; one rule for DICOMweb and Query/Retrieve."""
    _, uploaded = archive
    review = review_submit(study=uploaded, radiologist=radiologist, decision="normal", birads=1)
    [export] = DicomExport.objects.filter(review=review)
    assert export_service.send_export(export.pk) == "sent"
    study = f"StudyInstanceUID={uploaded.study_uid}"
    seen, _ = find(port, tmp_path, "QueryRetrieveLevel=IMAGE", study, "SOPInstanceUID", "Modality", aet="BRIDGE")
    assert [m.Modality for m in seen] == ["MG"]
    reader, _ = find(port, tmp_path, "QueryRetrieveLevel=IMAGE", study, "SOPInstanceUID", "Modality")
    assert sorted(m.Modality for m in reader) == ["MG", "SR"]  # the radiologist's peer finds it
    listed = api.get(f"/dicomweb/studies/{uploaded.study_uid}/instances").json()
    assert export.sop_instance_uid not in json.dumps(listed) and len(listed) == 1
    series = sr.series_uid(uploaded, sr.DECISION)
    url = f"/dicomweb/studies/{uploaded.study_uid}/series/{series}/instances/{export.sop_instance_uid}"
    assert api.get(url, HTTP_ACCEPT="application/dicom").status_code == 404


def test_a_query_matching_more_studies_than_one_answer_holds_is_refused_with_a_reason(
    port, archive, tmp_path, monkeypatch
):
    monkeypatch.setattr(qr_model, "MAX_STUDIES", 1)  # two studies match an empty query
    matches, log = find(port, tmp_path, "-d", "QueryRetrieveLevel=STUDY", "StudyInstanceUID")
    assert matches == [] and "DIMSE Status                  : 0xa700" in log, log
    assert "over 1 studies match: narrow the query" in log
    received, _ = archive
    [match], _ = find(port, tmp_path, "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={received.study_uid}")
    assert match.StudyInstanceUID == received.study_uid  # a narrower one is answered
