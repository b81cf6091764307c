"""Findings in ACR BI-RADS lexicon terms, linked to their marks on both views (issue 24)."""

from __future__ import annotations

import io

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction

from screening.intake.services.ingest import ingest_file
from screening.models import Finding, Image, ReportedFinding, Review, Study
from tests.dicom_factory import mg_dataset, to_bytes

pytestmark = pytest.mark.django_db


def four_views() -> tuple[Study, dict[str, Image]]:
    study_uid = None
    for i, (side, view) in enumerate((("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO"))):
        ds = mg_dataset(patient_id="LEX", laterality=side, view=view, seed=i, study_uid=study_uid)
        study_uid = ds.StudyInstanceUID
        ingest_file(file=io.BytesIO(to_bytes(ds)), filename=f"{side}{view}.dcm")
    study = Study.objects.get(study_uid=study_uid)
    return study, {f"{i.laterality}{i.view}": i for i in study.images.all()}


def review_url(study):
    return f"/api/v1/studies/{study.pk}/reviews/"


def body_with(images, reported, marks=None):
    marks = marks or [
        {"image": images["LCC"].pk, "type": "mass", "x": 40, "y": 50, "width": 20, "height": 20},
        {"image": images["LMLO"].pk, "type": "mass", "x": 30, "y": 60, "width": 20, "height": 20},
        {"image": images["RCC"].pk, "type": "calcification", "x": 10, "y": 10},
    ]
    return {
        "right": {"decision": "normal", "birads": 2},
        "left": {"decision": "abnormal", "birads": 4},
        "findings": marks,
        "reported_findings": reported,
    }


MASS = {
    "type": "mass",
    "marks": [0, 1],
    "descriptors": {"shape": "irregular", "margin": "spiculated", "density": "high"},
    "clock": 2,
    "depth": "middle",
    "distance_cm": 4.5,
}


def test_a_mass_seen_on_cc_and_mlo_is_one_finding_with_two_marks(rad_api):
    study, images = four_views()
    calcs = {"type": "calcifications", "marks": [2], "descriptors": {"morphology": "round", "distribution": "diffuse"}}
    response = rad_api.post(review_url(study), body_with(images, [MASS, calcs]), format="json")
    assert response.status_code == 201, response.json()
    review = Review.objects.get()
    mass, calc = ReportedFinding.objects.filter(review=review).order_by("number")
    assert (mass.number, mass.laterality, mass.clock, mass.depth, mass.distance_cm) == (1, "L", 2, "middle", 4.5)
    assert sorted(mass.marks.values_list("image__view", flat=True)) == ["CC", "MLO"]
    assert calc.laterality == "R" and list(calc.marks.values_list("type", flat=True)) == ["calcification"]
    shown = response.json()["review"]["reported_findings"][0]
    assert shown["text"] == (
        "Mass: irregular, spiculated, high density; left breast, 2 o'clock, middle third, 4.5 cm from the nipple"
    )
    assert sorted(shown["marks"]) == sorted(Finding.objects.filter(reported=mass).values_list("pk", flat=True))


@pytest.mark.parametrize(
    ("reported", "field", "message"),
    [
        ({**MASS, "type": "lump"}, "reported_findings[0].type", "the finding type must be one of mass"),
        (
            {**MASS, "descriptors": {"morphology": "round"}},
            "reported_findings[0].descriptors",
            "mass has no descriptor",
        ),
        (
            {**MASS, "descriptors": {"margin": "fuzzy"}},
            "reported_findings[0].descriptors.margin",
            "the margin of a mass",
        ),
        ({**MASS, "clock": 13}, "reported_findings[0].clock", "1 to 12"),
        ({**MASS, "quadrant": "north"}, "reported_findings[0].quadrant", "the quadrant must be one of UOQ"),
        ({**MASS, "depth": "deep"}, "reported_findings[0].depth", "the depth"),
        ({**MASS, "distance_cm": 45}, "reported_findings[0].distance_cm", "0 to 30 cm"),
        ({**MASS, "marks": [0, 2]}, "reported_findings[0].marks", "its marks lie on both breasts"),
        ({**MASS, "marks": [7]}, "reported_findings[0].marks", "there is no mark 7"),
        ({**MASS, "marks": [], "laterality": ""}, "reported_findings[0].laterality", "give its breast"),
        ({**MASS, "laterality": "R"}, "reported_findings[0].laterality", "on the other breast"),
    ],
)
def test_a_finding_outside_the_lexicon_is_refused_naming_what_is_wrong(rad_api, reported, field, message):
    study, images = four_views()
    response = rad_api.post(review_url(study), body_with(images, [reported]), format="json")
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert field in error["fields"] and message in error["message"], error
    assert not Review.objects.exists() and not ReportedFinding.objects.exists() and not Finding.objects.exists()


def test_one_mark_cannot_show_two_findings(rad_api):
    study, images = four_views()
    asym = {"type": "asymmetry", "marks": [1], "descriptors": {"kind": "focal"}}
    response = rad_api.post(review_url(study), body_with(images, [MASS, asym]), format="json")
    assert response.status_code == 400
    assert "mark 1 already shows finding 1" in response.json()["error"]["message"]


def test_a_finding_without_marks_names_its_breast(rad_api):
    study, images = four_views()
    skin = {"type": "associated", "laterality": "L", "descriptors": {"feature": "skin_thickening"}, "quadrant": "UOQ"}
    response = rad_api.post(review_url(study), body_with(images, [MASS, skin]), format="json")
    assert response.status_code == 201, response.json()
    assert ReportedFinding.objects.get(number=2).laterality == "L"


def test_a_correction_keeps_the_reported_findings_and_their_marks(rad_api):
    study, images = four_views()
    rad_api.post(review_url(study), body_with(images, [MASS]), format="json")
    response = rad_api.post(
        review_url(study),
        {"right": {"decision": "normal", "birads": 1}, "left": {"decision": "abnormal", "birads": 5}},
        format="json",
    )
    assert response.status_code == 201, response.json()
    v1, v2 = Review.objects.order_by("version")
    old, new = v1.reported_findings.get(), v2.reported_findings.get()
    assert (new.type, new.descriptors, new.clock, new.distance_cm) == (old.type, old.descriptors, 2, 4.5)
    assert new.marks.count() == 2 and v2.findings.count() == 3 and old.marks.count() == 2


def test_reported_findings_are_append_only_in_the_database(rad_api):
    study, images = four_views()
    rad_api.post(review_url(study), body_with(images, [MASS]), format="json")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE screening_reportedfinding SET clock = 3")
    with pytest.raises(IntegrityError), transaction.atomic():
        ReportedFinding.objects.create(review=Review.objects.get(), number=2, laterality="L", type="mass", clock=0)
    assert ReportedFinding.objects.get().clock == 2
