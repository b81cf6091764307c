"""The exam's structured report page (issue 24): per-breast assessment, lexicon findings, blinding."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from screening.reading.services.findings import FindingInput, ReportedFindingInput
from screening.reading.services.reviews import review_submit
from tests.portal.test_breast_assessment import older_read, two_sided_study

pytestmark = pytest.mark.django_db


def page_of(user, study) -> str:
    client = Client()
    client.force_login(user)
    response = client.get(reverse("study-report", args=[study.pk]))
    assert response.status_code == 200
    return response.content.decode()


def test_the_report_gives_each_breast_and_the_findings_in_lexicon_words(radiologist):
    study, right, left = two_sided_study("A")
    review_submit(
        study=study,
        radiologist=radiologist,
        breasts={"R": ("normal", 2), "L": ("abnormal", 4)},
        density="C",
        note="Compare with prior.",
        findings=[FindingInput(left.pk, "mass", 10, 10, 20, 20)],
        reported=[
            ReportedFindingInput(type="mass", marks=(0,), descriptors={"shape": "irregular"}, clock=2, depth="middle")
        ],
    )
    html = page_of(radiologist, study)
    assert '<tr data-side="Right"><th scope="row">Right</th><td>No recall</td><td>2</td></tr>' in html
    assert '<tr data-side="Left"><th scope="row">Left</th><td>Recall</td><td>4</td></tr>' in html
    assert "Exam: recall, BI-RADS 4." in html and "C: heterogeneously dense" in html
    assert "<li>Mass: irregular; left breast, 2 o&#x27;clock, middle third" in html
    assert "Compare with prior." in html


def test_an_older_read_is_reported_on_both_breasts(radiologist):
    study, _, _ = two_sided_study("A")
    older_read(study, radiologist, "normal", 1)
    html = page_of(radiologist, study)
    assert html.count("<td>No recall</td><td>1</td>") == 2 and "Read before per-breast assessment" in html


def test_a_blinded_second_reader_sees_no_decision_in_the_report(double_reading, radiologist, second_radiologist):
    study, _, _ = two_sided_study("A")
    review_submit(study=study, radiologist=radiologist, breasts={"R": ("abnormal", 5), "L": ("normal", 1)}, note="X9")
    html = page_of(second_radiologist, study)
    assert "once you have read this case" in html
    assert "X9" not in html and "Recall" not in html
    assert "No final decision yet" in page_of(radiologist, study)  # the first reader: awaiting the second read
