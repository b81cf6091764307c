"""A vendor's Mammography CAD SR (TID 4000), received by any face (upload, STOW-RS, C-STORE in
test_dicom_receiver.py), is kept byte for byte with its study; its single-image findings become stored marks
that the viewer data carry as the "Vendor CAD" layer, under the blinding of the portal's own AI. A CAD SR
whose findings cannot be read is kept all the same, with the reason recorded."""

from __future__ import annotations

import io

import pydicom
import pytest
from django.core.files.storage import default_storage
from django.test import Client
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from screening.errors import PortalError
from screening.intake.cad_sr import CadSrError, read_cad_marks
from screening.intake.services.ingest import ingest_file
from screening.intake.services.studies import stored_files_of
from screening.models import AuditEvent, CadMark, CadReport, Image, Study
from screening.reading.services.reading import set_policy
from screening.reading.services.reviews import review_submit
from tests.cad_sr_factory import CALCIFICATION_CLUSTER, MASS, CadFinding, cad_sr_dataset
from tests.conftest import stored_files
from tests.dicom_factory import mg_dataset, to_bytes

pytestmark = pytest.mark.django_db

OUTLINE = ((50.0, 60.0), (80.0, 60.0), (80.0, 90.0), (50.0, 90.0))


@pytest.fixture
def exam():
    """Two views of one study, ingested, and a CAD SR of them: a mass outlined on the CC (87 %), a
    calcification cluster pointed at on the MLO (40 %), and a mark the vendor says is not for presentation."""
    cc = mg_dataset(laterality="L", view="CC", seed=1)
    mlo = mg_dataset(laterality="L", view="MLO", seed=2, study_uid=cc.StudyInstanceUID)
    for ds in (cc, mlo):
        ingest_file(file=io.BytesIO(to_bytes(ds)), filename="mg.dcm")
    sr = cad_sr_dataset(
        [cc, mlo],
        [
            CadFinding(cc, MASS, OUTLINE, certainty=87),
            CadFinding(mlo, CALCIFICATION_CLUSTER, ((70.0, 100.0),), certainty=40),
            CadFinding(mlo, MASS, ((10.0, 10.0),), presented=False),
        ],
    )
    return {"cc": cc, "mlo": mlo, "sr": sr, "study": Study.objects.get(study_uid=cc.StudyInstanceUID)}


def _scoord(sr: Dataset) -> Dataset:
    finding = sr.ContentSequence[1].ContentSequence[0]  # the impression's first single-image finding
    return next(item for item in finding.ContentSequence if item.ValueType == "SCOORD")


# --- the parser ---------------------------------------------------------------------------------------------


def test_the_findings_marks_are_read_with_their_image_type_box_and_certainty(exam):
    marks = read_cad_marks(exam["sr"])
    assert [(m.image_sop_uid, m.finding, m.graphic_type) for m in marks] == [
        (exam["cc"].SOPInstanceUID, "Mass", "POLYLINE"),
        (exam["mlo"].SOPInstanceUID, "Cluster of calcifications", "POINT"),
    ]  # the mark not for presentation is left out
    mass, calcs = marks
    assert (mass.x, mass.y, mass.width, mass.height) == (50.0, 60.0, 30.0, 30.0)
    assert (calcs.x, calcs.y, calcs.width, calcs.height) == (70.0, 100.0, 0.0, 0.0)
    assert mass.certainty == pytest.approx(0.87) and calcs.certainty == pytest.approx(0.40)
    assert mass.probability is None


def test_a_scoord_that_names_no_image_cannot_be_read(exam):
    del _scoord(exam["sr"]).ContentSequence
    with pytest.raises(CadSrError, match="which image"):
        read_cad_marks(exam["sr"])


def test_an_odd_graphic_data_cannot_be_read(exam):
    _scoord(exam["sr"]).GraphicData = [1.0, 2.0, 3.0]
    with pytest.raises(CadSrError, match="GraphicData"):
        read_cad_marks(exam["sr"])


def test_another_sr_is_not_read_as_a_cad_sr(exam):
    exam["sr"].SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.33"
    with pytest.raises(CadSrError, match="not a Mammography CAD SR"):
        read_cad_marks(exam["sr"])


# --- ingest (the service every face calls) ------------------------------------------------------------------


def test_an_ingested_cad_sr_is_kept_byte_for_byte_with_its_marks_and_audited(exam, media_root):
    content = to_bytes(exam["sr"])
    result = ingest_file(file=io.BytesIO(content), filename="cad.dcm", via="upload")
    assert result.created and result.image is None
    report = result.cad_report
    assert report.study == exam["study"] and report.sop_uid == exam["sr"].SOPInstanceUID
    assert report.parse_error == "" and report.manufacturer == "Synthetic CAD Vendor"
    with default_storage.open(report.original.name) as stored:
        assert stored.read() == content
    marks = CadMark.objects.filter(report=report).order_by("id")
    assert [(m.finding, m.image_sop_uid) for m in marks] == [
        ("Mass", exam["cc"].SOPInstanceUID),
        ("Cluster of calcifications", exam["mlo"].SOPInstanceUID),
    ]
    event = AuditEvent.objects.get(action="cad_sr_ingest")
    assert event.detail == {"via": "upload", "marks": 2} and event.study_id == exam["study"].pk
    assert Image.objects.count() == 2  # an SR is no image: no rendition, no prediction
    assert report.original.name in stored_files_of(exam["study"])  # deleted with its study
    again = ingest_file(file=io.BytesIO(content), filename="cad.dcm")
    assert not again.created and again.cad_report == report and CadReport.objects.count() == 1


def test_a_cad_sr_whose_findings_cannot_be_read_is_kept_and_the_failure_recorded(exam, media_root):
    del _scoord(exam["sr"]).ContentSequence
    result = ingest_file(file=io.BytesIO(to_bytes(exam["sr"])), filename="cad.dcm", via="stow")
    report = result.cad_report
    assert result.created and report.pk is not None
    assert "which image" in report.parse_error
    assert not CadMark.objects.exists()
    assert AuditEvent.objects.get(action="cad_sr_ingest").detail["parse_error"] == report.parse_error
    assert stored_files(media_root).count(report.original.name) == 1


def test_a_cad_sr_with_a_broken_content_tree_is_kept_without_marks(exam, media_root):
    exam["sr"].ContentSequence = Sequence([Dataset()])  # an item with nothing in it
    exam["sr"].ContentSequence[0].ValueType = "CODE"
    exam["sr"].ContentSequence[0].ConceptNameCodeSequence = Sequence([Dataset()])
    exam["sr"].ContentSequence[0].ConceptNameCodeSequence[0].CodeValue = "111059"
    exam["sr"].ContentSequence[0].ContentSequence = Sequence([Dataset()])
    exam["sr"].ContentSequence[0].ContentSequence[0].ValueType = "NUM"
    exam["sr"].ContentSequence[0].ContentSequence[0].ConceptNameCodeSequence = [Dataset()]
    exam["sr"].ContentSequence[0].ContentSequence[0].ConceptNameCodeSequence[0].CodeValue = "111012"
    report = ingest_file(file=io.BytesIO(to_bytes(exam["sr"])), filename="cad.dcm").cad_report
    assert report.parse_error and not report.marks.exists()


def test_a_cad_sr_arriving_before_its_images_files_its_study_and_its_marks_find_them(media_root):
    cc = mg_dataset(laterality="R", view="CC", patient_id="EARLY-1")
    sr = cad_sr_dataset([cc], [CadFinding(cc, MASS, OUTLINE, certainty=60)])
    report = ingest_file(file=io.BytesIO(to_bytes(sr)), filename="cad.dcm").cad_report
    assert report.study.study_uid == cc.StudyInstanceUID and report.study.patient.patient_id == "EARLY-1"
    ingest_file(file=io.BytesIO(to_bytes(cc)), filename="cc.dcm")
    assert Study.objects.count() == 1
    assert CadMark.objects.get().image_sop_uid == Image.objects.get().sop_uid


def test_a_cad_sr_without_a_study_cannot_be_filed(media_root, exam):
    del exam["sr"].StudyInstanceUID
    before = stored_files(media_root)
    with pytest.raises(PortalError, match="StudyInstanceUID"):
        ingest_file(file=io.BytesIO(to_bytes(exam["sr"])), filename="cad.dcm")
    assert not CadReport.objects.exists() and stored_files(media_root) == before


# --- the faces: upload, STOW-RS, the viewer data (blinded) ---------------------------------------------------


def test_the_upload_api_keeps_a_cad_sr_and_says_what_it_is(rad_api, api, exam, media_root):
    # An API client files only into studies it sent (the rule of images): another's study is a 409.
    assert api.post("/api/v1/images/", data=to_bytes(exam["sr"]), content_type="application/dicom").status_code == 409
    assert not CadReport.objects.exists()
    api = rad_api
    response = api.post("/api/v1/images/", data=to_bytes(exam["sr"]), content_type="application/dicom")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["kind"] == "cad_sr" and body["study"] == exam["study"].pk and body["marks_read"] is True
    assert "marks" not in body  # the marks leave only through the viewer data, under blinding
    assert api.post("/api/v1/images/", data=to_bytes(exam["sr"]), content_type="application/dicom").status_code == 200


def test_stow_keeps_a_cad_sr_with_its_study(rad_api, exam, media_root):
    api = rad_api
    body = b"--XYZ\r\nContent-Type: application/dicom\r\n\r\n" + to_bytes(exam["sr"]) + b"\r\n--XYZ--\r\n"
    response = api.generic(
        "POST", "/dicomweb/studies", data=body, content_type='multipart/related; type="application/dicom"; boundary=XYZ'
    )
    assert response.status_code == 200, response.content
    [stored] = response.json()["00081199"]["Value"]
    assert stored["00081150"]["Value"] == ["1.2.840.10008.5.1.4.1.1.88.50"]
    assert stored["00081155"]["Value"] == [exam["sr"].SOPInstanceUID]
    assert CadReport.objects.get().marks.count() == 2


def _viewer_cad(user, study) -> dict:
    client = Client()
    client.force_login(user)
    data = client.get(f"/studies/{study.pk}/viewer-data/").json()
    sops = dict(Image.objects.filter(study=study).values_list("pk", "sop_uid"))
    return {sops[int(pk)]: entry["cad"] for pk, entry in data["images"].items() if "cad" in entry}


def test_the_viewer_data_carry_the_marks_on_their_images(exam, radiologist, media_root):
    ingest_file(file=io.BytesIO(to_bytes(exam["sr"])), filename="cad.dcm")
    cad = _viewer_cad(radiologist, exam["study"])
    assert cad[exam["cc"].SOPInstanceUID] == [
        {"finding": "Mass", "graphic_type": "POLYLINE", "x": 50.0, "y": 60.0, "width": 30.0, "height": 30.0,
         "probability": None, "certainty": pytest.approx(0.87)}
    ]  # fmt: skip
    assert [m["finding"] for m in cad[exam["mlo"].SOPInstanceUID]] == ["Cluster of calcifications"]


def test_a_blinded_reader_sees_no_cad_mark_before_their_own_read(exam, radiologist, admin_user, media_root):
    ingest_file(file=io.BytesIO(to_bytes(exam["sr"])), filename="cad.dcm")
    set_policy(user=admin_user, mode="single", blind_ai=True)
    assert _viewer_cad(radiologist, exam["study"]) == {}
    assert _viewer_cad(admin_user, exam["study"])  # an admin who does not read sees them
    review_submit(study=exam["study"], radiologist=radiologist, decision="normal", birads=1)
    assert len(_viewer_cad(radiologist, exam["study"])) == 2


def test_the_synthetic_cad_sr_is_a_mammography_cad_sr_to_dcmtk(exam, tmp_path):
    import shutil
    import subprocess

    dsrdump = shutil.which("dsrdump", path="/usr/bin:/usr/local/bin")
    if dsrdump is None:
        pytest.skip("dcmtk's dsrdump is not installed")
    path = tmp_path / "cad.dcm"
    path.write_bytes(to_bytes(exam["sr"]))
    result = subprocess.run([dsrdump, str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Mammography CAD SR Document" in result.stdout and '"Single Image Finding"' in result.stdout
    assert pydicom.dcmread(path).SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.50"
