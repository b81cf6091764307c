"""Per-breast assessment (issue 24): each breast's call, the exam's result from them, older reads mapped."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from screening.ai.labels import collect_labels
from screening.models import AuditEvent, Finding, Image, Outcome, Review, Study
from screening.reading.assessment import BreastCall, exam_result, mapped_breasts
from screening.reading.performance import performance
from screening.reading.services.reviews import FindingInput, review_submit
from tests.portal.reading_fixtures import make_study

pytestmark = pytest.mark.django_db


def review_url(study):
    return f"/api/v1/studies/{study.pk}/reviews/"


def two_sided_study(patient: str, seed: int = 0) -> tuple[Study, Image, Image]:
    """A study with a right and a left CC view."""
    study = make_study(patient, 0.5, True, seed=seed, laterality="R")
    make_study(patient, 0.5, True, seed=seed + 100, laterality="L", study_uid=study.study_uid)
    images = {i.laterality: i for i in Image.objects.filter(study=study)}
    return Study.objects.get(pk=study.pk), images["R"], images["L"]


def older_read(study, user, decision: str, birads: int, version: int = 1, **kwargs) -> Review:
    """A read as it was stored before per-breast assessment: an exam-level decision only."""
    return Review.objects.create(
        study=study, version=version, radiologist=user, decision=decision, birads=birads, **kwargs
    )


@pytest.mark.parametrize(
    ("right", "left", "exam"),
    [
        ((("normal", 1)), ("normal", 2), ("normal", 2)),
        (("abnormal", 0), ("normal", 1), ("abnormal", 0)),
        (("abnormal", 6), ("abnormal", 0), ("abnormal", 0)),  # ACR order 1, 2, 3, 6, 0, 4, 5
        (("abnormal", 3), ("abnormal", 6), ("abnormal", 6)),
        (("abnormal", 4), ("abnormal", 5), ("abnormal", 5)),
    ],
)
def test_the_exam_result_follows_the_more_worrying_breast(right, left, exam):
    assert exam_result({"R": BreastCall(*right), "L": BreastCall(*left)}) == exam


def test_a_read_can_recall_the_left_breast_and_clear_the_right(rad_api):
    study, right, left = two_sided_study("A")
    body = {
        "right": {"decision": "normal", "birads": 1},
        "left": {"decision": "abnormal", "birads": 0},
        "density": "C",
        "findings": [{"image": left.pk, "type": "mass", "x": 10, "y": 10, "width": 8, "height": 8}],
    }
    response = rad_api.post(review_url(study), body, format="json")
    assert response.status_code == 201, response.json()
    review = response.json()["review"]
    assert (review["decision"], review["birads"], review["density"]) == ("abnormal", 0, "C")
    assert review["breasts"] == {
        "right": {"decision": "normal", "birads": 1, "mapped": False},
        "left": {"decision": "abnormal", "birads": 0, "mapped": False},
    }
    stored = Review.objects.get()
    assert (stored.decision_right, stored.birads_right, stored.decision_left, stored.birads_left) == (
        "normal",
        1,
        "abnormal",
        0,
    )
    assert AuditEvent.objects.get(action="review_submit").detail["breasts"] == {
        "right": ["normal", 1],
        "left": ["abnormal", 0],
    }


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"right": {"decision": "normal", "birads": 1}}, "breasts", "both breasts"),
        (
            {"right": {"decision": "normal", "birads": 4}, "left": {"decision": "normal", "birads": 1}},
            "right",
            "right: BI-RADS 4 goes with an abnormal decision",
        ),
        (
            {
                "right": {"decision": "normal", "birads": 1},
                "left": {"decision": "abnormal", "birads": 4},
                "decision": "normal",
            },
            "decision",
            "the breasts make the exam abnormal, BI-RADS 4",
        ),
        ({"density": "A"}, "breasts", "each breast's decision"),
        ({"right": {"decision": "maybe", "birads": 1}, "left": {"decision": "normal", "birads": 1}}, "right", ""),
    ],
)
def test_an_incomplete_or_incoherent_breast_call_is_refused_and_leaves_nothing(rad_api, body, field, message):
    study, _, _ = two_sided_study("A")
    response = rad_api.post(review_url(study), body, format="json")
    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert field in error["fields"] and message in error["message"] + str(error["fields"])
    assert not Review.objects.exists() and Study.objects.get(pk=study.pk).status == "predicted"


def test_an_exam_level_decision_is_mapped_onto_the_breasts_its_findings_mark(radiologist):
    study, right, _ = two_sided_study("A")
    finding = {"image_id": right.pk, "type": "calcification", "x": 5, "y": 5}
    review = review_submit(
        study=study, radiologist=radiologist, decision="abnormal", birads=4, findings=[FindingInput(**finding)]
    )
    assert (review.decision_right, review.birads_right, review.decision_left, review.birads_left) == (
        "abnormal",
        4,
        "normal",
        1,
    )


def test_the_database_refuses_breasts_that_disagree_with_the_exam(radiologist):
    study, _, _ = two_sided_study("A")
    with pytest.raises(IntegrityError), transaction.atomic():
        Review.objects.create(
            study=study,
            version=1,
            radiologist=radiologist,
            decision="normal",
            birads=1,
            decision_right="abnormal",
            birads_right=4,
            decision_left="normal",
            birads_left=1,
        )
    with pytest.raises(IntegrityError), transaction.atomic():  # one breast only
        Review.objects.create(
            study=study,
            version=1,
            radiologist=radiologist,
            decision="normal",
            birads=1,
            decision_right="normal",
            birads_right=1,
        )


def test_an_older_single_decision_read_stays_readable_and_maps_onto_both_breasts(rad_api, radiologist):
    study, right, _ = two_sided_study("A")
    older = older_read(study, radiologist, "abnormal", 4)
    history = rad_api.get(review_url(study)).json()
    assert history[0]["breasts"] == {
        "right": {"decision": "abnormal", "birads": 4, "mapped": True},
        "left": {"decision": "abnormal", "birads": 4, "mapped": True},
    }
    Finding.objects.create(review=older, image=right, laterality="R", type="mass", x=1, y=1)
    history = rad_api.get(review_url(study)).json()
    assert history[0]["breasts"]["left"] == {"decision": "normal", "birads": 1, "mapped": True}
    assert mapped_breasts("normal", 2, {"R"}) == {
        "R": BreastCall("normal", 2, True),
        "L": BreastCall("normal", 2, True),
    }


def test_training_labels_follow_each_breasts_call(radiologist):
    study, right, left = two_sided_study("A")
    review_submit(study=study, radiologist=radiologist, breasts={"R": ("abnormal", 0), "L": ("normal", 1)})
    labels = {lab.laterality: lab.label for lab in collect_labels() if lab.image_id in (right.pk, left.pk)}
    assert labels == {"R": 1, "L": 0}


def test_training_labels_of_an_older_read_keep_their_mapping(radiologist):
    study, right, left = two_sided_study("A")
    older = older_read(study, radiologist, "abnormal", 4)
    Finding.objects.create(review=older, image=left, laterality="L", type="mass", x=1, y=1)
    labels = {lab.laterality: lab.label for lab in collect_labels() if lab.image_id in (right.pk, left.pk)}
    assert labels == {"R": 0, "L": 1}


def test_reads_that_recall_different_breasts_are_discordant(double_reading, radiologist, second_radiologist):
    study, _, _ = two_sided_study("A")
    review_submit(study=study, radiologist=radiologist, breasts={"R": ("abnormal", 0), "L": ("normal", 1)})
    second = review_submit(
        study=study, radiologist=second_radiologist, breasts={"R": ("normal", 1), "L": ("abnormal", 0)}
    )
    assert not second.is_final  # both recall the exam, but not the same breast
    event = AuditEvent.objects.get(action="arbitration_needed")
    assert event.detail["discordant_breasts"] == ["right", "left"]


def test_reads_that_agree_on_each_breast_are_concordant(double_reading, radiologist, second_radiologist):
    study, _, _ = two_sided_study("A")
    review_submit(study=study, radiologist=radiologist, breasts={"R": ("abnormal", 0), "L": ("normal", 1)})
    second = review_submit(
        study=study, radiologist=second_radiologist, breasts={"R": ("abnormal", 4), "L": ("normal", 2)}
    )
    assert second.is_final and Study.objects.get(pk=study.pk).status == "reported"


def test_a_second_read_is_compared_with_an_older_first_read_by_its_mapping(
    double_reading, radiologist, second_radiologist
):
    study, _, left = two_sided_study("A")
    first = older_read(study, radiologist, "abnormal", 0, slot="first", is_final=False)
    Finding.objects.create(review=first, image=left, laterality="L", type="mass", x=1, y=1)
    second = review_submit(
        study=study, radiologist=second_radiologist, breasts={"R": ("normal", 1), "L": ("abnormal", 0)}
    )
    assert second.is_final


def test_performance_has_breast_level_figures_against_each_breasts_outcome(radiologist, admin_user):
    study, _, _ = two_sided_study("A")
    review_submit(study=study, radiologist=radiologist, breasts={"R": ("abnormal", 0), "L": ("normal", 1)})
    Outcome.objects.create(
        study=study, laterality="L", result="malignant", cancer_type="invasive", recorded_by=admin_user
    )
    Outcome.objects.create(study=study, laterality="R", result="benign", recorded_by=admin_user)
    figures = performance()
    exam, breasts = figures["programme"], figures["programme"]["breasts"]
    assert exam["exams"] == 1 and exam["sensitivity"]["value"] == 1.0  # the exam was recalled and had a cancer
    assert breasts["exams"] == 2 and breasts["recalls"] == 1
    assert breasts["sensitivity"]["value"] == 0.0  # but the recalled breast was not the one with the cancer
    assert breasts["specificity"]["value"] == 0.0
    assert figures["readers"][0]["breasts"]["exams"] == 2
