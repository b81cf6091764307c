"""The DICOM receiver against real peers: Orthanc as the PACS, dcmtk's storescu with pydicom's test corpus.

The receiver runs in a thread of the test process on a free port, so it writes to the
test's database (a transactional test: the server thread has its own connection).
"""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import DigitalMammographyXRayImageStorageForPresentation as MG_FOR_PRESENTATION

from screening import dispatch
from screening.exchange import receiver
from screening.intake.services.renditions import full_resolution_name, preview_name
from screening.models import Image, Prediction
from tests.conftest import stored_files
from tests.dicom_factory import MG_PROCESSING, mg_dataset, phantom
from tests.dicom_peers import ECHOSCU, ORTHANC, STORESCU, orthanc
from tests.eager import tasks_in_process
from tests.portal.test_dicom_receiver import A700, A900, C000, statuses, storescu, write
from tests.portal.test_ingest_dicom import _as_mammogram

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(not (STORESCU and ECHOSCU), reason="dcmtk (storescu, echoscu) is not installed"),
]


@pytest.fixture
def receiver_port(settings):
    settings.PORTAL_DICOM_ALLOWED_AES = [("ORTHANC", "127.0.0.1"), ("MODALITY1", "127.0.0.1"), ("ECHOSCU", "127.0.0.1")]
    server = receiver.start(port=0, ae_title="SCREENING", host="127.0.0.1", block=False)
    yield server.server_address[1]
    server.shutdown()


@pytest.fixture
def eager():
    """Tasks run in this process (the receiver's: after each C-STORE answer); counts predict_image runs."""
    with tasks_in_process("screening.tasks.predict_image") as runs:
        yield runs


def _echo(port: int) -> str:
    result = subprocess.run(
        [ECHOSCU, "-v", "-aet", "ECHOSCU", "-aec", "SCREENING", "127.0.0.1", str(port)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.stdout + result.stderr


@pytest.mark.skipif(ORTHANC is None, reason="Orthanc (Debian package orthanc) is not installed")
def test_orthanc_sends_a_study_to_the_receiver_and_the_portal_predicts_it(
    receiver_port, tmp_path, media_root, champion, eager
):
    study_uid = pydicom.uid.generate_uid()
    pixels = phantom(rows=128, columns=96)
    datasets = [
        mg_dataset(pixels, laterality=side, view=view, study_uid=study_uid, seed=i)
        for i, (side, view) in enumerate([("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO")])
    ]
    with orthanc(tmp_path, {"portal": ("SCREENING", "127.0.0.1", receiver_port)}) as pacs:
        uploaded = [
            pacs.post("/instances", write(tmp_path, f"mg{i}.dcm", ds).read_bytes()) for i, ds in enumerate(datasets)
        ]
        assert {answer["Status"] for answer in uploaded} == {"Success"}, uploaded
        (orthanc_study,) = {answer["ParentStudy"] for answer in uploaded}
        sent = pacs.post("/modalities/portal/store", orthanc_study)
    assert sent.get("InstancesCount") == 4 and sent.get("FailedInstancesCount") == 0, sent
    dispatch.wait_for_background_tasks()  # embedded mode renders and predicts after each answer
    images = Image.objects.filter(study__study_uid=study_uid)
    assert sorted(images.values_list("sop_uid", flat=True)) == sorted(ds.SOPInstanceUID for ds in datasets)
    assert {(image.laterality, image.view) for image in images} == {
        ("R", "CC"),
        ("L", "CC"),
        ("R", "MLO"),
        ("L", "MLO"),
    }
    done = Prediction.objects.filter(image__in=images, model_version=champion, status=Prediction.Status.DONE)
    assert done.count() == 4 and all(0 <= p.probability <= 1 for p in done)
    assert eager == {prediction.pk: 1 for prediction in done}  # one predict_image run each, in the receiver's process
    assert len(stored_files(media_root)) >= 8  # an original and a rendition per image


def test_a_dataset_whose_sop_class_is_not_the_one_of_its_request_gets_a900_and_leaves_nothing(
    receiver_port, tmp_path, media_root, monkeypatch
):
    # pynetdicom then sends a file's dataset bytes as they are, under the SOP class of its file meta.
    monkeypatch.setattr("pynetdicom._config.STORE_SEND_CHUNKED_DATASET", True)
    # The file meta says For Presentation, so the request does; the dataset itself says For Processing.
    ds = mg_dataset(sop_class=MG_PROCESSING)
    ds.file_meta.MediaStorageSOPClassUID = MG_FOR_PRESENTATION
    path = tmp_path / "mismatch.dcm"
    ds.preamble = b"\x00" * 128
    ds.save_as(path, enforce_file_format=False)  # keeps the file meta as given
    assert pydicom.dcmread(path).file_meta.MediaStorageSOPClassUID == MG_FOR_PRESENTATION
    ae = AE(ae_title="MODALITY1")
    ae.add_requested_context(MG_FOR_PRESENTATION, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", receiver_port, ae_title="SCREENING")
    assert assoc.is_established
    try:
        status = assoc.send_c_store(path)
    finally:
        assoc.release()
    assert status.Status == receiver.DATASET_DOES_NOT_MATCH_SOP_CLASS
    assert not Image.objects.exists() and stored_files(media_root) == []


def _relabelled(path: Path, folder: Path) -> Path | None:
    content = _as_mammogram(path)
    if content is None:
        return None
    copy = folder / f"mg-{path.name}"
    copy.write_bytes(content)
    return copy


def _rows_and_files_agree(media_root: Path) -> None:
    """Every Image row has its original on disk (and its rendition and preview once the render worker made them),
    and every stored file belongs to a row."""
    held = set()
    for original, rendition, sha256 in Image.objects.values_list("original", "rendition", "sha256"):
        assert (media_root / original).is_file(), original
        assert not rendition or (media_root / rendition).is_file(), rendition
        held |= {original, rendition, full_resolution_name(sha256), preview_name(sha256)} - {""}
    assert set(stored_files(media_root)) <= held


def test_the_pydicom_corpus_sent_by_storescu_never_crashes_the_receiver_nor_leaves_partial_rows(
    receiver_port, tmp_path, media_root, monkeypatch
):
    monkeypatch.setattr("screening.intake.services.ingest.enqueue_images", lambda image_ids: [])
    copies = tmp_path / "relabelled"
    copies.mkdir()
    outcomes: Counter[str] = Counter()
    for path in map(Path, pydicom.data.get_testdata_files()):
        for sent in (path, _relabelled(path, copies)):
            if sent is None:
                outcomes["could not be relabelled"] += 1
                continue
            log = storescu(receiver_port, sent)
            answers = statuses(log)
            # A status the receiver never gives (0xC211 and the like) would mean its handler raised. 0x0111: the
            # corpus holds files that share a SOPInstanceUID with other content (MR_small, MR_small_padded...),
            # a resend the receiver refuses as a duplicate (services.filing).
            assert set(answers) <= {"Success", A900, C000, A700, "Unknown Status: 0x111"}, (sent.name, log)
            if answers:
                outcomes.update(answers)
            elif "Association Accepted" in log:
                outcomes["no presentation context accepted"] += 1
            else:
                outcomes["refused by storescu"] += 1
            _rows_and_files_agree(media_root)
    print(dict(outcomes))
    assert outcomes["Success"] > 0 and outcomes[C000] + outcomes[A900] > 0, outcomes
    assert "Received Echo Response (Success)" in _echo(receiver_port)
