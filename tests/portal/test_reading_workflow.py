"""Reading policies, blinded double reading, arbitration, locks, assignment and worklists (PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from screening.ai.labels import collect_labels
from screening.errors import Conflict, PortalError
from screening.intake.selectors import study_detail
from screening.models import AuditEvent, CaseLock, ReadingPolicy, Review, Study
from screening.reading.rules import policy_for
from screening.reading.selectors import arbitration_worklist, reading_worklist_for
from screening.reading.services.reading import acquire_lock, assign, open_case, set_policy
from screening.reading.services.reviews import review_submit
from tests.conftest import _token_client
from tests.portal.reading_fixtures import make_study

pytestmark = pytest.mark.django_db


def read(study, user, decision="normal", birads=1, **kwargs) -> Review:
    return review_submit(study=study, radiologist=user, decision=decision, birads=birads, **kwargs)


def test_without_a_policy_a_site_reads_once_and_the_read_is_final(radiologist):
    study = make_study("S1", 0.4, False)
    review = read(study, radiologist)
    assert (review.slot, review.is_final) == ("single", True)
    assert Study.objects.get(pk=study.pk).status == "reported"


def test_a_policy_change_is_versioned_and_audited(admin_user):
    make_study("S1", 0.03)
    make_study("S2", 0.5, seed=1)
    set_policy(user=admin_user, mode="double")
    set_policy(user=admin_user, mode="ai_triaged", triage_threshold=0.1, blind_ai=True)
    assert ReadingPolicy.objects.count() == 2
    assert policy_for().mode == "ai_triaged"
    event = AuditEvent.objects.filter(action="reading_policy_set").order_by("-id").first()
    assert event.detail["triage_threshold"] == 0.1
    # one of two exams below 0.1: 1 + 2 reads instead of 4
    assert event.detail["expected_workload"] == {
        "exams": 2,
        "one_reader": 1,
        "two_readers": 1,
        "reads": 3,
        "reads_per_exam": 1.5,
        "saving_vs_double": 0.25,
    }


def test_an_ai_triaged_policy_without_a_score_is_refused(admin_user):
    with pytest.raises(PortalError, match="AI exam score"):
        set_policy(user=admin_user, mode="ai_triaged")
    assert not ReadingPolicy.objects.exists()


def test_the_ai_triaged_policy_sends_exams_to_one_or_two_readers_by_score(admin_user, radiologist):
    set_policy(user=admin_user, mode="ai_triaged", triage_threshold=0.2)
    low, high, unscored = make_study("LOW", 0.05), make_study("HIGH", 0.6, seed=1), make_study("NONE", None, seed=2)
    assert (read(low, radiologist).slot, Study.objects.get(pk=low.pk).status) == ("single", "reported")
    first = read(high, radiologist)
    assert (first.slot, first.is_final, Study.objects.get(pk=high.pk).status) == ("first", False, "in_review")
    assert read(unscored, radiologist).slot == "first"  # no score, no triage: two readers


def test_a_concordant_pair_is_final_and_a_discordant_pair_goes_to_arbitration(
    double_reading, radiologist, second_radiologist, arbitrator
):
    agree, disagree = make_study("AGREE", 0.3), make_study("DISAGREE", 0.7, seed=1)
    read(agree, radiologist, "abnormal", 4)
    second = read(agree, second_radiologist, "abnormal", 5)  # both recall, same BI-RADS group
    assert (second.slot, second.is_final) == ("second", True)
    assert Study.objects.get(pk=agree.pk).status == "reported"

    read(disagree, radiologist, "normal", 1)
    second = read(disagree, second_radiologist, "abnormal", 4)
    assert (second.slot, second.is_final) == ("second", False)
    assert list(arbitration_worklist()) == [Study.objects.get(pk=disagree.pk)]
    assert AuditEvent.objects.filter(action="arbitration_needed", study_id=disagree.pk).exists()
    with pytest.raises(Conflict, match="awaits arbitration"):
        read(disagree, radiologist, "abnormal", 4)  # a reader cannot settle it alone
    final = read(disagree, arbitrator, "abnormal", 4)
    assert (final.slot, final.is_final) == ("arbitration", True)
    assert not arbitration_worklist().exists()


def test_a_different_birads_group_is_discordant_even_when_both_recall(double_reading, radiologist, second_radiologist):
    study = make_study("S", 0.5)
    read(study, radiologist, "abnormal", 3)
    assert read(study, second_radiologist, "abnormal", 5).is_final is False


def test_consensus_of_the_two_readers_resolves_a_discordant_pair(admin_user, radiologist, second_radiologist):
    set_policy(user=admin_user, mode="double", resolution="consensus")
    study = make_study("S", 0.5)
    read(study, radiologist, "normal", 2)
    read(study, second_radiologist, "abnormal", 0)
    # One reader alone makes no consensus: a proposal, until the other submits the same decision and group.
    proposal = read(study, second_radiologist, "abnormal", 4, note="proposed at consensus")
    assert (proposal.slot, proposal.is_final) == ("consensus", False)
    assert Study.objects.get(pk=study.pk).status == "in_review" and study in arbitration_worklist()
    assert AuditEvent.objects.filter(action="consensus_proposed", user=second_radiologist).exists()
    assert read(study, second_radiologist, "abnormal", 4).is_final is False  # agreeing with oneself is no consensus
    client = Client()
    client.force_login(radiologist)
    page = client.get(reverse("study-viewer", args=[study.pk])).content.decode()
    assert "rad2 proposed abnormal, BI-RADS 4: submit the same to agree" in page
    counter = read(study, radiologist, "abnormal", 3)  # another BI-RADS group (probably benign, not recall)
    assert (counter.slot, counter.is_final) == ("consensus", False)
    final = read(study, second_radiologist, "abnormal", 3, note="agreed at consensus")
    assert (final.slot, final.is_final) == ("consensus", True)
    assert Study.objects.get(pk=study.pk).status == "reported" and study not in arbitration_worklist()
    with pytest.raises(Conflict, match="only its author or an arbitrator"):
        read(study, radiologist, "normal", 1)  # one of the pair alone cannot rewrite a consensus


def test_a_reader_never_reads_the_same_exam_as_first_and_second_reader(double_reading, radiologist):
    study = make_study("S", 0.5)
    read(study, radiologist, "normal", 1)
    correction = read(study, radiologist, "abnormal", 4)  # a correction of the first read, not a second read
    assert (correction.slot, correction.version) == ("first", 2)
    assert study not in reading_worklist_for(radiologist)


def test_the_final_decision_is_the_training_label_not_the_individual_reads(
    double_reading, radiologist, second_radiologist, arbitrator
):
    study = make_study("S", 0.5)
    read(study, radiologist, "abnormal", 4)
    assert collect_labels() == []  # one read of two: no label yet
    read(study, second_radiologist, "normal", 1)
    assert collect_labels() == []  # discordant: still none
    final = read(study, arbitrator, "normal", 2)
    labels = collect_labels()
    assert {lab.review_id for lab in labels} == {final.pk} and {lab.label for lab in labels} == {0}


def test_blinding_the_second_reader_sees_no_trace_of_the_first_decision_in_the_api(
    admin_user, radiologist, second_radiologist
):
    set_policy(user=admin_user, mode="double", blind_ai=True)
    study = make_study("S", 0.8, True)
    read(study, radiologist, "abnormal", 5, note="FIRST-READER-NOTE")
    client = _token_client(second_radiologist)
    detail = client.get(f"/api/v1/studies/{study.pk}/")
    history = client.get(f"/api/v1/studies/{study.pk}/reviews/")
    body = detail.content.decode() + history.content.decode()
    assert detail.json()["reviews"] == [] and history.json() == []
    assert "FIRST-READER-NOTE" not in body and '"abnormal"' not in body and '"rad"' not in body
    assert detail.json()["exam_score"] is None and detail.json()["exam_flag"] is None  # AI blinded too
    assert all(image["prediction"] is None for image in detail.json()["images"])
    # After the second read both decisions show (concordant here).
    client.post(f"/api/v1/studies/{study.pk}/reviews/", {"decision": "abnormal", "birads": 4}, format="json")
    after = client.get(f"/api/v1/studies/{study.pk}/").json()
    assert {r["radiologist"] for r in after["reviews"]} == {"rad", "rad2"} and after["exam_score"] == 0.8


def test_a_reader_who_has_read_still_sees_only_their_own_read_until_the_other_has_read(
    double_reading, radiologist, second_radiologist
):
    study = make_study("S", 0.5)
    read(study, radiologist, "abnormal", 4)
    assert [r.radiologist_id for r in study_detail(radiologist, study.pk).reviews.all()] == [radiologist.pk]
    assert list(study_detail(second_radiologist, study.pk).reviews.all()) == []


def test_two_readers_opening_the_same_case_one_gets_the_lock(radiologist, second_radiologist):
    study = make_study("S", 0.5)
    first = open_case(study=study, user=radiologist)
    second = open_case(study=study, user=second_radiologist)
    assert first.lock.held and not second.lock.held and second.lock.holder == "rad"
    with pytest.raises(Conflict, match="being read by rad"):
        read(study, second_radiologist)
    assert CaseLock.objects.get(study=study).user == radiologist
    assert AuditEvent.objects.filter(action="lock_acquire", study_id=study.pk).count() == 1


def test_the_lock_is_released_on_submit_and_records_the_reading_time(radiologist, second_radiologist):
    study = make_study("S", 0.5)
    open_case(study=study, user=radiologist)
    CaseLock.objects.filter(study=study).update(
        acquired=CaseLock.objects.get(study=study).acquired - timedelta(seconds=42)
    )
    review = read(study, radiologist)
    assert not CaseLock.objects.exists() and review.reading_seconds >= 42
    assert AuditEvent.objects.filter(action="lock_release", detail__reason="submit").exists()


def test_an_expired_lock_is_taken_over_and_its_time_out_audited(radiologist, second_radiologist):
    study = make_study("S", 0.5)
    acquire_lock(study=study, user=radiologist)
    CaseLock.objects.update(expires=CaseLock.objects.get().expires - timedelta(hours=1))
    assert acquire_lock(study=study, user=second_radiologist).held
    assert AuditEvent.objects.filter(action="lock_timeout", detail__held_by="rad").exists()


def test_leaving_the_case_releases_the_lock(radiologist, client):
    study = make_study("S", 0.5)
    client.force_login(radiologist)
    client.get(reverse("study-viewer", args=[study.pk]))
    assert CaseLock.objects.filter(study=study, user=radiologist).exists()
    assert client.post(reverse("reading-release", args=[study.pk])).status_code == 204
    assert not CaseLock.objects.exists()
    assert AuditEvent.objects.filter(action="lock_release", detail__reason="leave").exists()


def test_the_lock_api_answers_409_with_who_holds_it(radiologist, second_radiologist):
    study = make_study("S", 0.5)
    url = reverse("api-reading-lock", args=[study.pk])
    assert _token_client(radiologist).post(url).status_code == 200
    response = _token_client(second_radiologist).post(url)
    assert response.status_code == 409 and "being read by rad" in response.json()["error"]["message"]


def test_the_reader_worklist_follows_the_policy_order_and_assignment(admin_user, radiologist, second_radiologist):
    set_policy(user=admin_user, mode="double", order="score")
    low, high = make_study("LOW", 0.1), make_study("HIGH", 0.9, seed=1)
    mine = make_study("MINE", 0.5, seed=2)
    assign(studies=[mine], reader=second_radiologist, user=admin_user)
    assert list(reading_worklist_for(radiologist)) == [high, low]  # not the case assigned to rad2
    assert list(reading_worklist_for(second_radiologist)) == [high, mine, low]
    set_policy(user=admin_user, mode="double", order="date")
    Study.objects.filter(pk=low.pk).update(study_date="2020-01-01")
    assert list(reading_worklist_for(radiologist))[0] == low
    assert AuditEvent.objects.filter(action="study_assign", study_id=mine.pk).exists()


def test_a_reader_who_read_the_exam_cannot_be_assigned_it_again(double_reading, admin_user, radiologist):
    study = make_study("S", 0.5)
    read(study, radiologist)
    with pytest.raises(Conflict, match="never reads an exam twice"):
        assign(studies=[study], reader=radiologist, user=admin_user)


def test_the_reading_worklist_api_hides_the_ai_score_when_the_policy_blinds_it(admin_user, radiologist):
    set_policy(user=admin_user, mode="double", blind_ai=True)
    make_study("S", 0.9, True)
    rows = _token_client(radiologist).get("/api/v1/reading/worklist/").json()["results"]
    assert len(rows) == 1 and rows[0]["exam_score"] is None and rows[0]["read"] == "first"


def test_the_policy_api_sets_a_version_and_shows_the_expected_workload(admin_user):
    make_study("S1", 0.05)
    make_study("S2", 0.5, seed=1)
    client = _token_client(admin_user)
    created = client.post(
        "/api/v1/reading/policy/", {"mode": "ai_triaged", "triage_threshold": 0.1, "blind_ai": True}, format="json"
    )
    assert created.status_code == 201, created.json()
    body = client.get("/api/v1/reading/policy/?threshold=0.6").json()
    assert body["current"]["mode"] == "ai_triaged" and body["expected_workload"]["one_reader"] == 2
    bad = client.post("/api/v1/reading/policy/", {"mode": "ai_triaged"}, format="json")
    assert bad.status_code == 400 and "triage_threshold" in bad.json()["error"]["fields"]
    assert ReadingPolicy.objects.count() == 1


def test_the_assign_api_refuses_an_unknown_reader_with_a_clear_error(admin_user):
    study = make_study("S", 0.5)
    response = _token_client(admin_user).post(
        "/api/v1/reading/assign/", {"studies": [study.pk], "reader": "ghost"}, format="json"
    )
    assert response.status_code == 400 and "no active user named ghost" in response.json()["error"]["message"]
    assert Study.objects.get(pk=study.pk).assigned_to is None


def test_only_the_final_decision_is_exported_as_an_sr(double_reading, radiologist, second_radiologist, monkeypatch):
    sent = []
    monkeypatch.setattr("screening.exchange.services.export.queue_decision", lambda review: sent.append(review.pk))
    study = make_study("S", 0.5)
    read(study, radiologist, "abnormal", 4)
    assert sent == []  # a first read sent to the PACS would unblind the second reader there
    final = read(study, second_radiologist, "abnormal", 4)
    assert sent == [final.pk]


def test_the_policy_pages_render_for_an_admin(admin_user, client):
    client.force_login(admin_user)
    response = client.post(
        reverse("reading-policy"),
        {
            "mode": "ai_triaged",
            "triage_threshold": "0.2",
            "resolution": "arbitrator",
            "order": "score",
            "lock_minutes": 10,
        },
    )
    assert response.status_code == 302 and policy_for().triage_threshold == 0.2
    page = client.get(reverse("reading-policy")).content.decode()
    assert "Expected workload" in page and "AI-triaged" in page
    assert APIClient().get(reverse("reading-policy")).status_code == 302


def test_expired_locks_are_swept_and_each_time_out_is_audited(radiologist):
    from screening import tasks

    study, other = make_study("S", 0.5), make_study("T", 0.5, seed=1)
    acquire_lock(study=study, user=radiologist)
    acquire_lock(study=other, user=radiologist)
    CaseLock.objects.filter(study=study).update(expires=CaseLock.objects.get(study=study).expires - timedelta(hours=1))
    assert tasks.release_expired_locks() == 1
    assert list(CaseLock.objects.values_list("study_id", flat=True)) == [other.pk]
    assert AuditEvent.objects.filter(action="lock_timeout", study_id=study.pk).count() == 1


def test_the_case_page_tells_a_second_reader_who_holds_the_lock_and_takes_none(
    double_reading, radiologist, second_radiologist, client
):
    study = make_study("S", 0.5)
    open_case(study=study, user=radiologist)
    client.force_login(second_radiologist)
    page = client.get(reverse("study-viewer", args=[study.pk])).content.decode()
    assert "Being read by rad" in page and "first read" in page and "data-lock-url" not in page
    assert CaseLock.objects.get(study=study).user == radiologist


def test_a_blinded_readers_viewer_data_carries_no_ai_result(admin_user, radiologist, client):
    from screening.models import ModelVersion, Prediction

    study = make_study("S", 0.9, True)
    model = ModelVersion.objects.create(name="m", checkpoint="x", threshold=0.5)
    region = {"x": 1, "y": 2, "width": 3, "height": 4, "probability": 0.9}
    Prediction.objects.filter(image__study=study).delete()  # the baseline's queued one: only a done one here
    Prediction.objects.create(
        image=study.images.get(), model_version=model, status="done", probability=0.9, regions=[region]
    )
    client.force_login(radiologist)
    url = reverse("study-viewer-data", args=[study.pk])
    assert [image.get("regions") for image in client.get(url).json()["images"].values()] == [[region]]
    set_policy(user=admin_user, mode="double", blind_ai=True)
    assert all("regions" not in image for image in client.get(url).json()["images"].values())
