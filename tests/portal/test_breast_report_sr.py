"""The decision SR carries each breast's call and the lexicon findings (issue 24): dsrdump, dciodvfy."""

from __future__ import annotations

import io
import shutil
import subprocess

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from screening.exchange import sr
from screening.intake.services.ingest import ingest_file
from screening.models import Study
from screening.reading.services.findings import FindingInput, ReportedFindingInput
from screening.reading.services.reviews import review_submit
from tests.dicom_factory import mg_dataset, to_bytes
from tests.portal.test_dicom_sr_conformance import arrive, dciodvfy, saved

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(not shutil.which("dciodvfy") or not shutil.which("dsrdump"), reason="needs dciodvfy, dsrdump"),
]


def test_the_decision_sr_has_each_breasts_call_and_one_tracking_id_per_finding(radiologist, tmp_path):
    study_uid = generate_uid()
    arrive("R", study_uid, predict=False)
    arrive("L", study_uid, predict=False)
    mlo = mg_dataset(laterality="L", view="MLO", study_uid=study_uid, seed=3)
    mlo.StudyTime, mlo.StudyID, mlo.ReferringPhysicianName = "101500", "S1", ""
    ingest_file(file=io.BytesIO(to_bytes(mlo)), filename="mlo.dcm")
    study = Study.objects.get(study_uid=study_uid)
    left = list(study.images.filter(laterality="L").order_by("pk"))
    assert len(left) == 2
    review = review_submit(
        study=study,
        radiologist=radiologist,
        breasts={"R": ("normal", 1), "L": ("abnormal", 4)},
        findings=[FindingInput(left[0].pk, "mass", 10, 10, 20, 20), FindingInput(left[1].pk, "mass", 30, 30, 20, 20)],
        reported=[ReportedFindingInput(type="mass", marks=(0, 1), descriptors={"shape": "oval"}, clock=3)],
    )
    path = saved(sr.decision_sr(review), tmp_path, "decision.dcm")
    assert dciodvfy(path) == []
    dump = subprocess.run(["dsrdump", str(path)], capture_output=True, text=True, timeout=60).stdout
    assert '"Right breast"' in dump and '"Left breast"' in dump
    assert dump.count('"Finding 1: mass"') == 2  # one finding, its two marks (CC and MLO)
    assert '(397140005,SCT,"Negative")' in dump and '(397144001,SCT,"Suspicious")' in dump
    ds = dcmread(path)
    assert ds.SOPInstanceUID == sr.decision_uid(review)
