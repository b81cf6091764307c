"""Outcomes per breast: recorded by admins or permitted clients, audited, imported from CSV, labels."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from screening.ai.labels import collect_labels
from screening.models import AuditEvent, Outcome
from screening.reading.services.outcomes import OutcomeInput, record_outcome
from screening.reading.services.reviews import review_submit
from tests.conftest import _token_client
from tests.portal.reading_fixtures import make_study

pytestmark = pytest.mark.django_db


def test_an_admin_records_an_outcome_through_the_api_and_it_is_audited(admin_user):
    study = make_study("S", 0.5)
    response = _token_client(admin_user).post(
        "/api/v1/outcomes/",
        {"study": study.pk, "laterality": "L", "result": "malignant", "cancer_type": "invasive"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    outcome = Outcome.objects.get()
    assert (outcome.result, outcome.source, outcome.recorded_by) == ("malignant", "api", admin_user)
    event = AuditEvent.objects.get(action="outcome_record")
    assert event.study_id == study.pk and event.detail["cancer_type"] == "invasive"


def test_an_api_client_needs_the_add_outcome_permission(api_client_user):
    study = make_study("S", 0.5)
    client = _token_client(api_client_user)
    body = {"study": study.pk, "laterality": "R", "result": "no_cancer"}
    assert client.post("/api/v1/outcomes/", body, format="json").status_code == 403
    api_client_user.user_permissions.add(
        Permission.objects.get(codename="add_outcome"), Permission.objects.get(codename="view_all_studies")
    )
    assert client.post("/api/v1/outcomes/", body, format="json").status_code == 201


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"laterality": "L", "result": "malignant"}, "cancer_type"),  # a cancer needs its type
        ({"laterality": "L", "result": "benign", "cancer_type": "dcis"}, "cancer_type"),
        ({"laterality": "B", "result": "benign"}, "laterality"),
    ],
)
def test_an_incoherent_outcome_is_refused_and_leaves_nothing(admin_user, body, field):
    study = make_study("S", 0.5)
    response = _token_client(admin_user).post("/api/v1/outcomes/", {"study": study.pk, **body}, format="json")
    assert response.status_code == 400 and field in response.json()["error"]["fields"]
    assert not Outcome.objects.exists() and not AuditEvent.objects.filter(action="outcome_record").exists()


def csv_file(text: str):
    return io.BytesIO(text.encode())


def test_a_csv_imports_every_line_or_none(admin_user):
    a, b = make_study("A", 0.5), make_study("B", 0.5, seed=1)
    client = _token_client(admin_user)
    bad = (
        "study_uid,laterality,result,cancer_type,diagnosed_on\n"
        f"{a.study_uid},L,malignant,dcis,2026-01-02\n"
        f"{b.study_uid},R,malignant,,\n"
    )
    response = client.post("/api/v1/outcomes/import/", {"file": csv_file(bad)}, format="multipart")
    assert response.status_code == 400 and "line 3" in response.json()["error"]["message"]
    assert not Outcome.objects.exists()
    good = bad.replace(",R,malignant,,", ",R,no_cancer,,")
    response = client.post("/api/v1/outcomes/import/", {"file": csv_file(good)}, format="multipart")
    assert response.status_code == 201 and response.json() == {"imported": 2}
    assert set(Outcome.objects.values_list("study_id", "result", "source")) == {
        (a.pk, "malignant", "csv"),
        (b.pk, "no_cancer", "csv"),
    }
    assert AuditEvent.objects.filter(action="outcome_import", detail__lines=2).exists()


def test_a_csv_with_an_unknown_study_names_the_line(admin_user):
    text = "study_uid,laterality,result\n1.2.3.4,L,benign\n"
    response = _token_client(admin_user).post("/api/v1/outcomes/import/", {"file": csv_file(text)}, format="multipart")
    assert response.status_code == 400 and "line 2: no study" in response.json()["error"]["message"]


def test_an_outcome_overrides_the_final_decision_as_training_label_for_its_breast(admin_user, radiologist):
    study = make_study("S", 0.5)  # one left image
    review_submit(study=study, radiologist=radiologist, decision="normal", birads=1)
    assert {lab.label for lab in collect_labels()} == {0}
    record_outcome(
        item=OutcomeInput(study=study, laterality="L", result="malignant", cancer_type="dcis"), user=admin_user
    )
    assert {lab.label for lab in collect_labels()} == {1}
    # a newer outcome supersedes (append-only: both rows stay)
    record_outcome(item=OutcomeInput(study=study, laterality="L", result="benign"), user=admin_user)
    assert {lab.label for lab in collect_labels()} == {0} and Outcome.objects.count() == 2


def test_the_outcomes_page_records_and_imports(admin_user, client):
    study = make_study("S", 0.5)
    client.force_login(admin_user)
    response = client.post(reverse("outcomes"), {"study": "ACC1", "laterality": "R", "result": "benign"})
    assert response.status_code == 302 and Outcome.objects.filter(source="form").count() == 1
    text = f"study_uid,laterality,result\n{study.study_uid},R,nonsense\n"
    page = client.post(reverse("outcomes"), {"file": io.BytesIO(text.encode())})
    assert page.status_code == 200 and "line 2: result must be one of" in page.content.decode()
    assert Outcome.objects.count() == 1


def test_a_client_limited_to_its_uploads_cannot_record_or_probe_anothers_study(api_client_user, radiologist):
    api_client_user.user_permissions.add(Permission.objects.get(codename="add_outcome"))
    theirs = make_study("THEIRS", 0.5)  # sent by nobody the client knows
    client = _token_client(api_client_user)
    response = client.post("/api/v1/outcomes/", {"study": theirs.pk, "laterality": "L", "result": "benign"})
    assert response.status_code == 400 and "no such study" in response.json()["error"]["message"]
    text = f"study_uid,laterality,result\n{theirs.study_uid},L,benign\n"
    response = client.post("/api/v1/outcomes/import/", {"file": csv_file(text)}, format="multipart")
    assert response.status_code == 400 and "no study with this StudyInstanceUID" in response.json()["error"]["message"]
    assert not Outcome.objects.exists()


def _studies_of_one_woman():
    """Patient P-7 screened twice (2024 and 2026), and another woman's study."""
    from datetime import date

    from screening.models import Study

    first, second, other = make_study("P-7", 0.2), make_study("P-7", 0.3, seed=1), make_study("P-8", 0.4, seed=2)
    Study.objects.filter(pk=first.pk).update(accession_number="A2024-11", study_date=date(2024, 3, 1))
    Study.objects.filter(pk=second.pk).update(accession_number="A2026-05", study_date=date(2026, 3, 1))
    Study.objects.filter(pk=other.pk).update(accession_number="A2026-06", study_date=date(2026, 3, 2))
    return first, second, other


def _record(client, **fields):
    return client.post(reverse("outcomes"), {"laterality": "L", "result": "benign", **fields}, follow=True)


def test_the_outcomes_form_finds_the_study_by_accession_number(admin_user, client):
    first, _, _ = _studies_of_one_woman()
    client.force_login(admin_user)
    page = _record(client, study=" A2024-11 ")
    assert Outcome.objects.get().study_id == first.pk
    assert page.content.decode().count("Outcome recorded.") == 1  # said once, not by the page and its frame
    assert "A2024-11" in page.content.decode()  # the list names the study as people know it


def test_the_outcomes_form_finds_the_study_by_patient_id_and_date(admin_user, client):
    _, second, other = _studies_of_one_woman()
    client.force_login(admin_user)
    _record(client, study="P-8")
    assert Outcome.objects.get().study_id == other.pk
    page = _record(client, study="P-7")  # two studies: which one?
    assert "2 studies match this patient ID: give the study date too" in page.content.decode()
    assert Outcome.objects.count() == 1
    _record(client, study="P-7", study_date="2026-03-01")
    assert Outcome.objects.order_by("-id").first().study_id == second.pk


@pytest.mark.parametrize("reference", ["NO-SUCH", "{pk}"])
def test_the_outcomes_form_refuses_an_unknown_reference_or_an_internal_number(admin_user, client, reference):
    first, _, _ = _studies_of_one_woman()
    client.force_login(admin_user)
    page = _record(client, study=reference.format(pk=first.pk))
    assert page.status_code == 200
    assert "no study with this accession number or patient ID" in page.content.decode()
    assert not Outcome.objects.exists() and not AuditEvent.objects.filter(action="outcome_record").exists()


def test_a_user_who_may_not_see_identity_cannot_probe_accessions_or_patient_ids_through_the_form(api_client_user):
    from screening.errors import PortalError
    from screening.intake.selectors import study_by_reference

    api_client_user.user_permissions.add(
        Permission.objects.get(codename="add_outcome"), Permission.objects.get(codename="view_all_studies")
    )
    _studies_of_one_woman()
    for reference in ("A2024-11", "P-8", "NO-SUCH"):  # the same answer whether it exists or not
        with pytest.raises(PortalError) as refused:
            study_by_reference(api_client_user, reference)
        assert refused.value.message.startswith("looking a study up by accession number or patient ID needs")


def test_the_outcomes_list_shows_accession_and_patient_only_to_users_who_may_see_identity(client, admin_user):
    from django.contrib.auth.models import Group

    from tests.conftest import _user

    first, _, _ = _studies_of_one_woman()
    record_outcome(item=OutcomeInput(study=first, laterality="L", result="benign"), user=admin_user)
    bridge = _user(type(admin_user), "bridge2", "api_client")
    bridge.user_permissions.add(
        Permission.objects.get(codename="add_outcome"), Permission.objects.get(codename="view_all_studies")
    )
    assert Group.objects.filter(user=bridge, name="api_client").exists()
    client.force_login(bridge)
    hidden = client.get(reverse("outcomes")).content.decode()
    assert "A2024-11" not in hidden and "P-7" not in hidden and f"#{first.pk}" in hidden
    client.force_login(admin_user)
    shown = client.get(reverse("outcomes")).content.decode()
    assert "A2024-11" in shown and "P-7" in shown
