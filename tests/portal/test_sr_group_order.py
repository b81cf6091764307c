"""The SRs' measurement groups with an image region come first (issue 23, OHIF): a viewer that opens a TID 1500
report at its first group (OHIF's SR viewport shows the image under it) opens on the AI's top region or the
reader's first mark, not on the exam's or the decision's group, which lie on no image. The content stays the
same and complete, and dciodvfy still passes (tests/browser/test_ohif.py shows what OHIF then draws)."""

from __future__ import annotations

import shutil

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from screening.exchange import sr
from screening.models import Prediction, Study
from screening.reading.services.findings import FindingInput, ReportedFindingInput
from screening.reading.services.reviews import review_submit
from tests.portal import test_dicom_sr
from tests.portal.test_breast_report_sr import _cc_and_mlo
from tests.portal.test_dicom_sr_conformance import arrive, dciodvfy, saved

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (Debian dicom3tools) is not installed"),
]

model = test_dicom_sr.model  # its fixture: the fake model whose heatmap peaks at one pixel

IMAGING_MEASUREMENTS, MEASUREMENT_GROUP = "126010", "125007"
TRACKING_IDENTIFIER = "112039"


def groups(path) -> list[tuple[str, bool]]:
    """Each measurement group of the report, in order: its tracking identifier and whether it has an image
    region (a SCOORD, TID 1410)."""
    ds = dcmread(path)
    container = next(i for i in ds.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == IMAGING_MEASUREMENTS)
    out = []
    for group in container.ContentSequence:
        assert group.ConceptNameCodeSequence[0].CodeValue == MEASUREMENT_GROUP
        items = group.ContentSequence
        label = next(i.TextValue for i in items if i.ConceptNameCodeSequence[0].CodeValue == TRACKING_IDENTIFIER)
        out.append((label, any(i.ValueType in ("SCOORD", "SCOORD3D") for i in items)))
    return out


def regions_first(order: list[tuple[str, bool]]) -> bool:
    flags = [has_region for _, has_region in order]
    return flags == sorted(flags, reverse=True)


def test_the_ai_result_sr_begins_with_the_top_regions_of_the_most_suspicious_view_then_the_scores(model, tmp_path):
    """The fake model gives the left view 0.8 and the right 0.2; the right arrived first."""
    study_uid = generate_uid()
    arrive("R", study_uid)
    arrive("L", study_uid)
    study = Study.objects.get(study_uid=study_uid)
    left = Prediction.objects.get(image__study=study, image__laterality="L")
    Prediction.objects.filter(pk=left.pk).update(
        regions=[
            {"x": 10.0, "y": 20.0, "width": 30.0, "height": 40.0, "probability": 0.7},
            {"x": 100.0, "y": 150.0, "width": 20.0, "height": 20.0, "probability": 0.4},
        ]
    )
    path = saved(sr.ai_result_sr(study), tmp_path, "ai.dcm")
    order = groups(path)
    labels = [label for label, _ in order]
    assert order[0][1] and labels[0].startswith("Suspicious region 1, L ")  # the left view's most suspicious box
    assert labels[1].startswith("Suspicious region 2, L ") and labels[2].startswith("Suspicious region 1, R ")
    assert regions_first(order)
    # complete: the two boxes of the left view, the right view's peak, the exam, both breasts and both images
    assert sum(has_region for _, has_region in order) == 3
    assert {"Exam", "L breast", "R breast"} <= set(labels) and len(order) == 3 + 3 + 2
    assert dciodvfy(path) == []


def test_the_decision_sr_begins_with_the_readers_marks_then_the_decision_breasts_and_unmarked_findings(
    radiologist, tmp_path
):
    study, (cc, mlo) = _cc_and_mlo(generate_uid())
    review = review_submit(
        study=study,
        radiologist=radiologist,
        breasts={"R": ("abnormal", 0), "L": ("abnormal", 4)},
        findings=[FindingInput(cc.pk, "mass", 10, 10, 20, 20), FindingInput(mlo.pk, "mass", 30, 30, 20, 20)],
        reported=[
            ReportedFindingInput(type="asymmetry", laterality="R", descriptors={"kind": "global"}),
            ReportedFindingInput(type="mass", marks=(0, 1), descriptors={"shape": "oval"}),
        ],
    )
    path = saved(sr.decision_sr(review), tmp_path, "decision.dcm")
    order = groups(path)
    marked = [label for label, _ in order if label.endswith(": mass")]
    assert order[:2] == [(marked[0], True), (marked[1], True)]  # the mass's CC and MLO marks
    assert regions_first(order)
    unmarked = [label for label, has_region in order if label.endswith("global asymmetry")]
    assert len(unmarked) == 1 and not dict(order)[unmarked[0]]
    assert {"Decision", "Right breast", "Left breast"} <= {label for label, _ in order} and len(order) == 6
    assert dciodvfy(path) == []


def test_a_decision_without_marks_keeps_the_decision_first(radiologist, tmp_path):
    """Nothing to put on an image: the decision's group stays first (OHIF shows no image for it)."""
    study_uid = generate_uid()
    arrive("L", study_uid, predict=False)
    review = review_submit(
        study=Study.objects.get(study_uid=study_uid), radiologist=radiologist, decision="abnormal", birads=4
    )
    path = saved(sr.decision_sr(review), tmp_path, "decision.dcm")
    order = groups(path)
    assert order[0] == ("Decision", False) and not any(has_region for _, has_region in order)
    assert dciodvfy(path) == []
