"""A correction starts from the read it corrects; opening a case does not make it 'in review'.

A correction that left findings out used to save a version without them (and so changed the labels
training reads); the viewer's form was empty on a correction. Opening a case used to move it to
'in review' for good, though nothing was decided.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from screening.models import AuditEvent, Review, Study
from screening.reading.services.reviews import FindingInput, review_submit
from tests.portal.reading_fixtures import make_study

pytestmark = pytest.mark.django_db


def url(study: Study) -> str:
    return f"/api/v1/studies/{study.pk}/reviews/"


def first_read(study: Study, user, **extra) -> Review:
    image = study.images.get()
    findings = [FindingInput(image.pk, "mass", 10, 20, 30, 40), FindingInput(image.pk, "calcification", 5, 5)]
    return review_submit(study=study, radiologist=user, decision="abnormal", birads=4, findings=findings, **extra)


def kinds(review: Review) -> list[tuple]:
    return sorted(review.findings.values_list("type", "x", "y", "width", "height"))


def test_a_correction_without_findings_keeps_those_of_the_read_it_corrects(rad_api, radiologist):
    study = make_study("P-CORR1", 0.8, True)
    v1 = first_read(study, radiologist)
    response = rad_api.post(url(study), {"decision": "abnormal", "birads": 5}, format="json")
    assert response.status_code == 201, response.json()
    v2 = Review.objects.get(study=study, version=2)
    assert kinds(v2) == kinds(v1) and len(kinds(v2)) == 2  # the labels training reads are unchanged
    assert kinds(Review.objects.get(pk=v1.pk)) == kinds(v1)  # v1 untouched
    event = AuditEvent.objects.filter(action="review_correct", study=study).get()
    assert event.detail["corrects"] == 1 and event.detail["findings"] == 2


def test_a_correction_that_lists_no_findings_removes_them_on_purpose(rad_api, radiologist):
    study = make_study("P-CORR2", 0.8, True)
    first_read(study, radiologist)
    response = rad_api.post(url(study), {"decision": "normal", "birads": 1, "findings": []}, format="json")
    assert response.status_code == 201, response.json()
    assert kinds(Review.objects.get(study=study, version=2)) == []


def test_a_new_read_without_findings_has_none_and_a_second_reader_inherits_nothing(
    double_reading, radiologist, second_radiologist
):
    study = make_study("P-CORR3", 0.8, True)
    first_read(study, radiologist)
    second = review_submit(study=study, radiologist=second_radiologist, decision="abnormal", birads=4)
    assert second.slot == "second" and kinds(second) == []  # another reader's read, not a correction
    # The first reader's correction of the first read, before the second: it corrected v1.
    other = make_study("P-CORR4", 0.8, True, seed=1)
    v1 = first_read(other, radiologist)
    corrected = review_submit(study=other, radiologist=radiologist, decision="abnormal", birads=5)
    assert corrected.slot == "first" and kinds(corrected) == kinds(v1)


def test_the_case_page_says_which_read_a_correction_starts_from(client, radiologist, second_radiologist):
    study = make_study("P-CORR5", 0.8, True)
    page = reverse("study-viewer", args=[study.pk])
    client.force_login(radiologist)
    assert 'data-corrects=""' in client.get(page).content.decode()  # unread: a new read
    first_read(study, radiologist)
    assert 'data-corrects="1"' in client.get(page).content.decode()
    client.force_login(second_radiologist)  # may not correct another reader's final decision
    assert 'data-corrects=""' in client.get(page).content.decode()


def test_opening_a_case_leaves_its_status_and_a_read_sets_it(client, radiologist):
    study = make_study("P-OPEN", 0.3, False)  # predicted, unread
    client.force_login(radiologist)
    assert client.get(reverse("study-viewer", args=[study.pk])).status_code == 200
    assert Study.objects.get(pk=study.pk).status == "predicted"  # looked at: still unread
    assert AuditEvent.objects.filter(action="open_case", study=study).exists()
    review_submit(study=study, radiologist=radiologist, decision="normal", birads=1)
    assert Study.objects.get(pk=study.pk).status == "reported"
