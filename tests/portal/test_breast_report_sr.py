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
from tests.portal.test_dicom_sr import content_items
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


def _cc_and_mlo(study_uid: str):
    """A left CC and a left MLO (and a right CC) of one study: the left CC and MLO are returned."""
    arrive("R", study_uid, predict=False)
    arrive("L", study_uid, predict=False)
    mlo = mg_dataset(laterality="L", view="MLO", study_uid=study_uid, seed=3)
    mlo.StudyTime, mlo.StudyID, mlo.ReferringPhysicianName = "101500", "S1", ""
    ingest_file(file=io.BytesIO(to_bytes(mlo)), filename="mlo.dcm")
    study = Study.objects.get(study_uid=study_uid)
    return study, list(study.images.filter(laterality="L").order_by("pk"))


def _dump(path) -> str:
    """dsrdump's text with every code printed, concept names included."""
    return subprocess.run(["dsrdump", "+Pc", str(path)], capture_output=True, text=True, timeout=60).stdout


def test_a_finding_on_cc_and_mlo_carries_its_lexicon_descriptors_and_location_on_both(radiologist, tmp_path):
    """TID 4206's content for each mark of the finding: the BI-RADS finding code, shape, margin, density,
    clockface, quadrant, depth (CID 6005-6025 codes) and the distance from the nipple in cm."""
    study, (cc, mlo) = _cc_and_mlo(generate_uid())
    review = review_submit(
        study=study,
        radiologist=radiologist,
        breasts={"R": ("normal", 1), "L": ("abnormal", 5)},
        findings=[FindingInput(cc.pk, "mass", 10, 10, 20, 20), FindingInput(mlo.pk, "mass", 30, 30, 20, 20)],
        reported=[
            ReportedFindingInput(
                type="mass",
                marks=(0, 1),
                descriptors={"shape": "irregular", "margin": "spiculated", "density": "high"},
                clock=2,
                quadrant="UOQ",
                depth="middle",
                distance_cm=4.5,
            )
        ],
    )
    path = saved(sr.decision_sr(review), tmp_path, "decision.dcm")
    assert dciodvfy(path) == []
    dump = _dump(path)
    expected = [
        '(121071,DCM,"Finding")=(129788004,SCT,"Mammographic breast mass")',
        '(300842002,SCT,"Shape")=(49608001,SCT,"Irregular")',
        '(111037,DCM,"Margins")=(129742005,SCT,"Spiculated lesion")',
        '(111035,DCM,"Lesion Density")=(129744006,SCT,"High density lesion")',
        '(111014,DCM,"Clockface or region")=(129773009,SCT,"2 o\'clock position")',
        '(111048,DCM,"Quadrant location")=(76365002,SCT,"Upper outer quadrant of breast")',
        '(111020,DCM,"Depth")=(C25569,NCIt,"Middle")',
        '(121242,DCM,"Distance from nipple")="4.5" (cm,UCUM,"centimeter")',
    ]
    for item in expected:
        assert dump.count(item) == 2, item  # on the CC mark and on the MLO mark
    assert dump.count('"Finding 1: mass"') == 2
    ds = dcmread(path)
    assert "CodingSchemeIdentificationSequence" not in ds  # standard codes only: nothing private to declare


def test_calcifications_and_an_unmarked_finding_have_their_codes_and_a_private_term_is_declared(radiologist, tmp_path):
    """Calcification type and distribution; a finding with no mark (a global asymmetry: no standard code,
    the portal's declared scheme) is a group of its own over its breast's images."""
    study, (cc, mlo) = _cc_and_mlo(generate_uid())
    review = review_submit(
        study=study,
        radiologist=radiologist,
        breasts={"R": ("abnormal", 0), "L": ("abnormal", 4)},
        findings=[FindingInput(cc.pk, "calcification", 5, 5), FindingInput(mlo.pk, "calcification", 6, 6)],
        reported=[
            ReportedFindingInput(
                type="calcifications",
                marks=(0, 1),
                descriptors={"morphology": "fine_pleomorphic", "distribution": "segmental"},
                quadrant="subareolar",
                depth="anterior",
            ),
            ReportedFindingInput(type="asymmetry", laterality="R", descriptors={"kind": "global"}, depth="posterior"),
        ],
    )
    path = saved(sr.decision_sr(review), tmp_path, "decision.dcm")
    dump = _dump(path)
    for item in (
        '(121071,DCM,"Finding")=(309587003,SCT,"Calcification of breast")',
        '(111009,DCM,"Calcification Type")=(111344,DCM,"Fine pleomorphic calcification")',
        '(111008,DCM,"Calcification Distribution")=(129768003,SCT,"Segmental calcification distribution")',
        '(111014,DCM,"Clockface or region")=(129784002,SCT,"Subareolar region")',
        '(111020,DCM,"Depth")=(255549009,SCT,"Anterior")',
    ):
        assert dump.count(item) == 2, item
    # a global asymmetry: the standard code (4th edition's term), the lexicon word in the tracking label
    assert dump.count('(121071,DCM,"Finding")=(129790003,SCT,"Asymmetric breast tissue")') == 1
    assert dump.count('(111020,DCM,"Depth")=(255551008,SCT,"Posterior")') == 1
    assert '"Finding 2: global asymmetry"' in dump
    ds = dcmread(path)
    assert "99SCRNLEX" not in dump and "CodingSchemeIdentificationSequence" not in ds
    meanings = [item.ConceptCodeSequence[0].CodeMeaning for item in content_items(ds) if "ConceptCodeSequence" in item]
    assert meanings and all(len(m) <= 64 for m in meanings)
    assert dciodvfy(path) == []  # no private scheme: not even dciodvfy's "unrecognized designator" warning
