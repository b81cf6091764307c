"""Blinding beyond the matrix: the triage side, the default orders, a later study's prior, and the rule's two
forms (services.reading.may_see_ai for one case, screening.blinding's query condition) agreeing."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from screening.models import CaseLock, Study
from screening.reading.rules import case_reading
from screening.reading.services.reading import set_policy
from screening.reading.services.reviews import review_submit
from tests.conftest import _token_client
from tests.portal.reading_fixtures import make_study

pytestmark = pytest.mark.django_db


def test_under_ai_triage_with_the_ai_hidden_the_case_page_does_not_say_single_or_first_read(
    admin_user, radiologist, client
):
    set_policy(user=admin_user, mode="ai_triaged", triage_threshold=0.2, blind_ai=True)
    low, high = make_study("LOW", 0.05, False), make_study("HIGH", 0.6, True, seed=1)
    client.force_login(radiologist)
    pages = [client.get(reverse("study-viewer", args=[s.pk])).content.decode() for s in (low, high)]
    for page in pages:
        assert "single read" not in page and "first read" not in page
        assert "your read (one reader or two, by the hidden AI score)" in page
    # Both still record what the policy says: one reader below the triage score, two above.
    assert review_submit(study=low, radiologist=radiologist, decision="normal", birads=1).slot == "single"
    assert review_submit(study=high, radiologist=radiologist, decision="normal", birads=1).slot == "first"


def test_under_ai_triage_with_the_ai_shown_the_page_names_the_read(admin_user, radiologist, client):
    set_policy(user=admin_user, mode="ai_triaged", triage_threshold=0.2)
    low = make_study("LOW", 0.05, False)
    client.force_login(radiologist)
    assert "single read" in client.get(reverse("study-viewer", args=[low.pk])).content.decode()


def test_a_blinded_readers_lists_are_in_date_order_by_default_never_by_score(admin_user, radiologist):
    older_high = make_study("A", 0.95, True)
    newer_low = make_study("B", 0.05, False, seed=1)
    Study.objects.filter(pk=older_high.pk).update(study_date=dt.date(2026, 1, 1))
    Study.objects.filter(pk=newer_low.pk).update(study_date=dt.date(2026, 2, 1))
    reader = _token_client(radiologist)
    ids = [r["id"] for r in reader.get("/api/v1/worklist/").json()["results"]]
    assert ids == [older_high.pk, newer_low.pk]  # by score while nothing is hidden
    set_policy(user=admin_user, mode="double", blind_ai=True)
    ids = [r["id"] for r in reader.get("/api/v1/worklist/").json()["results"]]
    assert ids == [newer_low.pk, older_high.pk]  # newest first
    # "Status" order breaks its ties by date for them, not by score.
    ids = [r["id"] for r in reader.get("/api/v1/worklist/?ordering=status").json()["results"]]
    assert ids == [newer_low.pk, older_high.pk]


def test_a_later_study_does_not_carry_the_score_of_a_prior_the_reader_has_not_read(
    admin_user, radiologist, second_radiologist, client
):
    """The reader has read the later study (so its AI shows), but not her prior, still unread."""
    prior = make_study("W", 0.93, True)
    later = make_study("W", 0.1, False, seed=1)
    Study.objects.filter(pk=prior.pk).update(study_date=dt.date(2025, 1, 1))
    set_policy(user=admin_user, mode="single", blind_ai=True)
    review_submit(study=later, radiologist=radiologist, decision="normal", birads=1)
    client.force_login(radiologist)
    [entry] = client.get(reverse("study-viewer-data", args=[later.pk])).json()["priors"]
    assert entry["id"] == prior.pk and "exam_score" not in entry and "exam_flag" not in entry
    # Once the prior has its final decision, its score is no secret.
    review_submit(study=prior, radiologist=second_radiologist, decision="normal", birads=1)
    [entry] = client.get(reverse("study-viewer-data", args=[later.pk])).json()["priors"]
    assert entry["exam_score"] == pytest.approx(0.93)


def test_the_query_condition_and_the_case_rule_agree_at_every_stage(
    admin_user, radiologist, second_radiologist, arbitrator
):
    from screening.blinding import ai_visibility  # here: the other tests also run against code without it

    set_policy(user=admin_user, mode="double", blind_ai=True)
    study = make_study("S", 0.7, True)
    users = [radiologist, second_radiologist, arbitrator, admin_user]

    def agree():
        for user in users:
            by_case = case_reading(Study.objects.get(pk=study.pk), user).show_ai
            by_query = Study.objects.filter(pk=study.pk).filter(ai_visibility(user).condition()).exists()
            assert by_case is by_query, (user.username, by_case, by_query)

    agree()  # unread
    review_submit(study=study, radiologist=radiologist, decision="normal", birads=1)
    agree()  # awaiting the second read
    review_submit(study=study, radiologist=second_radiologist, decision="abnormal", birads=4)
    agree()  # awaiting arbitration
    assert ai_visibility(arbitrator).shows(Study.objects.get(pk=study.pk))
    review_submit(study=study, radiologist=arbitrator, decision="abnormal", birads=4)
    agree()  # final


def test_an_admin_who_sees_the_ai_may_not_read_a_case_the_policy_blinds(admin_user, radiologist, client):
    """Admins without a reader role are not blinded: their read would not be blind, so it is refused."""
    from screening.errors import Conflict

    study = make_study("ADM", 0.7, True)
    set_policy(user=admin_user, mode="double", blind_ai=True)
    with pytest.raises(Conflict, match="needs the radiologist role"):
        review_submit(study=study, radiologist=admin_user, decision="normal", birads=1)
    client.force_login(admin_user)
    page = client.get(reverse("study-viewer", args=[study.pk])).content.decode()
    assert "needs the radiologist role" in page  # and the admin's look takes no lock
    assert not CaseLock.objects.filter(study=study).exists()
    assert review_submit(study=study, radiologist=radiologist, decision="normal", birads=1).slot == "first"
