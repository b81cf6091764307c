"""The DICOM receiver (manage.py dicom_receiver) against dcmtk's storescu and echoscu, real DICOM clients.

The receiver runs in a thread of the test process on a free port, so it writes to the
test's database (a transactional test: the server thread has its own connection).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.core.files.storage import FileSystemStorage
from django.core.management import CommandError, call_command
from django.urls import reverse

from screening.exchange import receiver
from screening.models import AuditEvent, DicomPeer, Image
from tests.conftest import stored_files
from tests.dicom_factory import (
    MG_PROCESSING,
    dcmtk_compress,
    implicit_vr,
    jpeg2000_lossless,
    mg_dataset,
    phantom,
    rle_lossless,
    to_bytes,
)

# How storescu names the receiver's failure statuses 0xA900, 0xC000 and 0xA700.
A900, C000, A700 = "Error: DataSetDoesNotMatchSOPClass", "Error: CannotUnderstand", "Refused: OutOfResources"
ROOT = Path(__file__).resolve().parents[2]
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
# dcmtk's clients, not pynetdicom's same-named scripts that the virtualenv puts first on PATH.
STORESCU = shutil.which("storescu", path="/usr/bin:/usr/local/bin")
ECHOSCU = shutil.which("echoscu", path="/usr/bin:/usr/local/bin")

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(not (STORESCU and ECHOSCU), reason="dcmtk (storescu, echoscu) is not installed"),
]


@pytest.fixture
def port(settings):
    settings.PORTAL_DICOM_ALLOWED_AES = [("MODALITY1", "127.0.0.1"), ("ECHOSCU", "127.0.0.1")]
    server = receiver.start(port=0, ae_title="SCREENING", host="127.0.0.1", block=False)
    yield server.server_address[1]
    server.shutdown()


def write(tmp_path: Path, name: str, ds) -> Path:
    path = tmp_path / name
    path.write_bytes(to_bytes(ds))
    return path


def storescu(port: int, *files: Path, aet: str = "MODALITY1", aec: str = "SCREENING", options=()) -> str:
    """storescu's verbose log: one 'Received Store Response (...)' line per instance sent."""
    result = subprocess.run(
        [STORESCU, "-v", "-nh", *options, "-aet", aet, "-aec", aec, "127.0.0.1", str(port), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.stdout + result.stderr


def statuses(log: str) -> list[str]:
    return re.findall(r"Received Store Response \(([^)]*)\)", log)


def damaged(tmp_path: Path, name: str = "damaged.dcm") -> Path:
    ds = mg_dataset(seed=99)
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]  # half the pixels its header describes
    return write(tmp_path, name, ds)


def test_echoscu_gets_an_answer_from_the_receiver(port):
    result = subprocess.run(
        [ECHOSCU, "-v", "-aet", "ECHOSCU", "-aec", "SCREENING", "127.0.0.1", str(port)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Received Echo Response (Success)" in result.stdout + result.stderr


def test_an_mg_instance_sent_by_storescu_is_ingested_like_an_upload(port, tmp_path):
    ds = mg_dataset()
    log = storescu(port, write(tmp_path, "mg.dcm", ds))
    assert statuses(log) == ["Success"], log
    image = Image.objects.get(sop_uid=ds.SOPInstanceUID)
    assert image.study.patient.patient_id == "PAT-0001" and image.laterality == "L" and image.view == "CC"
    # Received instances belong to the portal itself (no uploading account): every reader sees them.
    assert image.uploaded_by is None
    event = AuditEvent.objects.get(action="ingest", object_id=str(image.pk))
    assert event.detail == {"via": "dicom"} and event.ip_address == "127.0.0.1"


def test_the_same_instance_sent_twice_is_stored_once(port, tmp_path):
    path = write(tmp_path, "mg.dcm", mg_dataset())
    assert statuses(storescu(port, path, path)) == ["Success", "Success"]
    assert Image.objects.count() == 1


@pytest.mark.parametrize(
    "encode, options",
    [
        pytest.param(implicit_vr, ("-xi",), id="implicit-vr"),
        pytest.param(jpeg2000_lossless, ("-xv",), id="jpeg2000-lossless"),
        pytest.param(rle_lossless, ("-xr",), id="rle"),
        pytest.param(lambda ds: dcmtk_compress(ds, "dcmcjpls"), ("-xt",), id="jpeg-ls-lossless"),
        pytest.param(lambda ds: dcmtk_compress(ds, "dcmcjpeg"), ("-xs",), id="jpeg-lossless-sv1"),
    ],
)
def test_every_transfer_syntax_that_ingest_decodes_is_accepted(port, tmp_path, encode, options):
    ds = encode(mg_dataset(sop_class=MG_PROCESSING))
    log = storescu(port, write(tmp_path, "mg.dcm", ds), options=options)
    assert statuses(log) == ["Success"], log
    image = Image.objects.get(sop_uid=ds.SOPInstanceUID)
    assert (image.rows, image.columns) == (256, 200)


def test_a_ct_instance_is_refused_at_negotiation(port, tmp_path, media_root):
    ct = mg_dataset(modality="CT", sop_class=CT_IMAGE_STORAGE)
    log = storescu(port, write(tmp_path, "ct.dcm", ct))
    assert "no presentation context" in log.lower() or "no acceptable presentation contexts" in log.lower(), log
    assert statuses(log) == []
    assert not Image.objects.exists() and stored_files(media_root) == []


def test_a_dataset_that_does_not_match_its_mg_sop_class_gets_a900(port, tmp_path, media_root):
    log = storescu(port, write(tmp_path, "ct-in-mg.dcm", mg_dataset(modality="CT")))
    assert statuses(log) == [A900], log
    assert not Image.objects.exists() and stored_files(media_root) == []


def test_a_refusal_carries_an_error_comment_with_the_reason(port, tmp_path):
    """Issue 23: refusals carried no Error Comment; a PACS operator saw only the status code."""
    log = storescu(port, write(tmp_path, "ct-in-mg.dcm", mg_dataset(modality="CT")), options=("-d",))
    assert re.findall(r"DIMSE Status +: (0x[0-9a-f]{4})", log) == ["0xa900"], log
    [comment] = re.findall(r"\(0000,0902\) LO \[([^\]]*)\]", log)
    assert "CT" in comment and "PAT-0001" not in comment, log


def test_a_damaged_instance_gets_c000_leaves_nothing_and_logs_no_patient_data(port, tmp_path, media_root, caplog):
    caplog.set_level("INFO")
    log = storescu(port, damaged(tmp_path))
    assert statuses(log) == [C000], log
    assert not Image.objects.exists() and stored_files(media_root) == []
    refusals = [r.getMessage() for r in caplog.records if r.name == "screening.exchange.receiver"]
    assert any("0xC000" in message and "invalid_pixel_data" in message for message in refusals), refusals
    assert "PAT-0001" not in caplog.text and "Test^Patient" not in caplog.text


def test_a_full_disk_answers_a700_and_leaves_nothing(port, tmp_path, media_root, monkeypatch):
    def full(self, name, content):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(FileSystemStorage, "_save", full)
    log = storescu(port, write(tmp_path, "mg.dcm", mg_dataset()))
    assert statuses(log) == [A700], log
    assert not Image.objects.exists() and stored_files(media_root) == []


def test_one_association_sending_100_instances_with_one_bad_one_stores_99(port, tmp_path, monkeypatch):
    # Not 99 predictions: without a broker (SQLite runs) each would run in the receiver's thread.
    monkeypatch.setattr("screening.intake.services.ingest.enqueue_images", lambda image_ids: [])
    pixels = phantom(rows=64, columns=48)
    files = [write(tmp_path, f"mg{i}.dcm", mg_dataset(pixels, patient_id=f"PAT-{i % 10}")) for i in range(99)]
    files.insert(50, damaged(tmp_path))
    log = storescu(port, *files)
    assert log.count("Association Accepted") == 1, log
    assert statuses(log) == ["Success"] * 50 + [C000] + ["Success"] * 49, log
    assert Image.objects.count() == 99


def test_an_unknown_calling_ae_is_rejected_at_association_and_audited(port, tmp_path):
    log = storescu(port, write(tmp_path, "mg.dcm", mg_dataset()), aet="STRANGER")
    assert "Association Rejected" in log and statuses(log) == [], log
    assert not Image.objects.exists()
    event = AuditEvent.objects.get(action="dicom_association_rejected")
    assert event.detail == {"calling_ae": "STRANGER", "host": "127.0.0.1"}


def test_a_known_ae_title_from_another_host_is_rejected(port, settings, tmp_path):
    settings.PORTAL_DICOM_ALLOWED_AES = [("MODALITY1", "10.0.0.5")]
    log = storescu(port, write(tmp_path, "mg.dcm", mg_dataset()))
    assert "Association Rejected" in log and not Image.objects.exists(), log
    assert AuditEvent.objects.filter(action="dicom_association_rejected").count() == 1


def test_an_association_for_another_called_ae_title_is_rejected(port, tmp_path):
    log = storescu(port, write(tmp_path, "mg.dcm", mg_dataset()), aec="NOTUS")
    assert "Association Rejected" in log and not Image.objects.exists(), log


def test_a_malformed_allow_list_entry_stops_start_up_with_its_name(tmp_path):
    env = {**os.environ, "PORTAL_DICOM_ALLOWED_AES": "MODALITY1@127.0.0.1,PACS", "PORTAL_VAR_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "PORTAL_DICOM_ALLOWED_AES: 'PACS' is not AE_TITLE@IP_ADDRESS" in result.stderr


def test_a_peer_an_admin_enabled_is_accepted_and_a_disabled_one_is_not(port, settings, tmp_path):
    settings.PORTAL_DICOM_ALLOWED_AES = []
    peer = DicomPeer.objects.create(ae_title="PACS", host="127.0.0.1")
    path = write(tmp_path, "mg.dcm", mg_dataset())
    assert statuses(storescu(port, path, aet="PACS")) == ["Success"]
    peer.enabled = False
    peer.save()
    log = storescu(port, write(tmp_path, "other.dcm", mg_dataset(seed=3)), aet="PACS")
    assert "Association Rejected" in log, log
    assert Image.objects.count() == 1


def test_an_admin_adds_a_dicom_peer_in_the_admin_and_it_is_audited(client, admin_user):
    client.force_login(admin_user)
    response = client.post(
        reverse("admin:screening_dicompeer_add"),
        {"ae_title": "PACS", "host": "10.0.0.5", "enabled": "on", "site": "default"},
    )
    assert response.status_code == 302, response.content
    peer = DicomPeer.objects.get()
    assert receiver.allowed_peers() >= {("PACS", "10.0.0.5")}
    event = AuditEvent.objects.get(action="dicom_peer_add")
    assert event.user == admin_user and event.object_id == str(peer.pk)
    assert event.detail == {
        "ae_title": "PACS",
        "host": "10.0.0.5",
        "enabled": True,
        "site": "default",
        "query_user": "",  # store only: no Query/Retrieve account
    }
    bad = client.post(reverse("admin:screening_dicompeer_add"), {"ae_title": "A\\B", "host": "pacs.example"})
    assert bad.status_code == 200 and DicomPeer.objects.count() == 1


def test_over_tls_storescu_stores_an_instance_and_plain_tcp_is_refused(settings, tmp_path):
    settings.PORTAL_DICOM_ALLOWED_AES = [("MODALITY1", "127.0.0.1")]
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"]
        + ["-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    server = receiver.start(
        port=0,
        ae_title="SCREENING",
        host="127.0.0.1",
        ssl_context=receiver.tls_context(str(cert), str(key)),
        block=False,
    )
    try:
        port = server.server_address[1]
        path = write(tmp_path, "mg.dcm", mg_dataset())
        assert statuses(storescu(port, path)) == [], "a plain TCP association must not get through"
        log = storescu(port, path, options=("+tla", "+cf", str(cert)))
        assert statuses(log) == ["Success"], log
    finally:
        server.shutdown()
    assert Image.objects.count() == 1


def test_the_command_refuses_a_tls_certificate_without_its_key():
    with pytest.raises(CommandError, match="--tls-cert and --tls-key go together"):
        call_command("dicom_receiver", "--tls-cert", "cert.pem")


def test_compose_runs_the_receiver_after_migrate_with_its_port_published():
    dicom = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["dicom"]
    assert dicom["command"] == "python manage.py dicom_receiver --port 11112"
    assert (ROOT / "screening" / "management" / "commands" / "dicom_receiver.py").exists()
    assert dicom["depends_on"]["web"] == {"condition": "service_healthy"}
    assert "11112:11112" in dicom["ports"] and "healthcheck" in dicom


def test_a_peer_files_what_it_sends_under_its_site_and_others_under_the_default_site(port, tmp_path):
    from screening.models import Site

    Site.objects.create(code="north", name="North unit")
    DicomPeer.objects.create(ae_title="NORTHMG", host="127.0.0.1", site="north")
    assert statuses(storescu(port, write(tmp_path, "n.dcm", mg_dataset(seed=1)), aet="NORTHMG")) == ["Success"]
    assert statuses(storescu(port, write(tmp_path, "d.dcm", mg_dataset(seed=2)))) == ["Success"]
    assert sorted(Image.objects.values_list("study__site", flat=True)) == ["default", "north"]


def test_a_resend_with_other_pixels_gets_a_failure_with_an_error_comment_and_is_audited(port, tmp_path, media_root):
    """Issue 21: C-STORE Success while the new content is thrown away hid a misfiled image."""
    from pynetdicom import AE

    ds = mg_dataset(seed=1)
    assert statuses(storescu(port, write(tmp_path, "first.dcm", ds))) == ["Success"]
    assert statuses(storescu(port, write(tmp_path, "again.dcm", ds))) == ["Success"]  # identical: idempotent
    ds.PixelData = mg_dataset(seed=2).PixelData
    log = storescu(port, write(tmp_path, "other.dcm", ds))
    assert statuses(log) and statuses(log) != ["Success"], log
    ae = AE(ae_title="MODALITY1")
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title="SCREENING")
    assert assoc.is_established
    try:
        answer = assoc.send_c_store(ds)
    finally:
        assoc.release()
    assert answer.Status == 0x0111
    assert answer.ErrorComment == "SOPInstanceUID already held with other content"
    assert Image.objects.count() == 1 and len(stored_files(media_root)) == 1
    events = AuditEvent.objects.filter(action="ingest_conflict")
    assert events.count() == 2 and {e.detail["via"] for e in events} == {"dicom"}


def test_a_vendor_cad_sr_sent_by_storescu_is_kept_with_its_marks_even_when_they_cannot_be_read(port, tmp_path):
    from screening.models import CadReport
    from tests.cad_sr_factory import MASS, CadFinding, cad_sr_dataset

    cc = mg_dataset(laterality="R", view="CC")
    assert statuses(storescu(port, write(tmp_path, "cc.dcm", cc))) == ["Success"]
    good = cad_sr_dataset([cc], [CadFinding(cc, MASS, ((5.0, 6.0), (40.0, 6.0), (40.0, 30.0)), certainty=75)])
    broken = cad_sr_dataset([cc], [CadFinding(cc, MASS, ((5.0, 6.0),))])
    broken.ContentSequence[1].ContentSequence[0].ContentSequence[1].GraphicData = [1.0, 2.0, 3.0]  # odd
    log = storescu(port, write(tmp_path, "good.dcm", good), write(tmp_path, "broken.dcm", broken))
    assert statuses(log) == ["Success", "Success"], log
    kept = CadReport.objects.get(sop_uid=good.SOPInstanceUID)
    assert kept.study.study_uid == cc.StudyInstanceUID and kept.parse_error == ""
    assert [(m.finding, m.image_sop_uid) for m in kept.marks.all()] == [("Mass", cc.SOPInstanceUID)]
    failed = CadReport.objects.get(sop_uid=broken.SOPInstanceUID)
    assert "GraphicData" in failed.parse_error and not failed.marks.exists()
    assert AuditEvent.objects.filter(action="cad_sr_ingest", detail__via="dicom").count() == 2
