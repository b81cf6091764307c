"""Sites (screening units): each reads under its own policy; uploads, DICOM peers and admins file studies
under a site; readers' worklists are per site; an unknown site is refused at every entry point."""

from __future__ import annotations

import pytest
from django.urls import reverse

from screening.blinding import ai_visibility
from screening.errors import PortalError
from screening.models import AuditEvent, Image, ReadingPolicy, Site, Study
from screening.reading.rules import policy_for, policy_of
from screening.reading.selectors import reading_worklist_for
from screening.reading.services.reading import set_policy
from screening.reading.services.reviews import review_submit
from tests.conftest import _token_client, stored_files
from tests.dicom_factory import mg_dataset, to_bytes
from tests.portal.reading_fixtures import make_study

pytestmark = pytest.mark.django_db


@pytest.fixture
def north(db):
    return Site.objects.create(code="north", name="North unit")


def at_site(study: Study, code: str) -> Study:
    Study.objects.filter(pk=study.pk).update(site=code)
    study.refresh_from_db()
    return study


def test_each_site_reads_under_its_own_policy(admin_user, radiologist, second_radiologist, north):
    set_policy(user=admin_user, mode="double", site="north")
    here = make_study("S1", 0.4, False)
    there = at_site(make_study("S2", 0.4, False, seed=1), "north")
    assert policy_of(here).mode == "single" and policy_of(there).mode == "double"
    single = review_submit(study=here, radiologist=radiologist, decision="normal", birads=1)
    first = review_submit(study=there, radiologist=radiologist, decision="normal", birads=1)
    assert (single.slot, single.is_final) == ("single", True)
    assert (first.slot, first.is_final) == ("first", False)
    second = review_submit(study=there, radiologist=second_radiologist, decision="normal", birads=1)
    assert (second.slot, second.is_final) == ("second", True)


def test_a_readers_worklist_is_per_site_in_that_sites_order(admin_user, radiologist, north):
    set_policy(user=admin_user, mode="single", site="north", order="date", blind_ai=True)
    here = make_study("S1", 0.9, True)
    older = at_site(make_study("S2", 0.1, False, seed=1), "north")
    newer = at_site(make_study("S3", 0.9, True, seed=2), "north")
    Study.objects.filter(pk=older.pk).update(study_date="2024-01-01")
    Study.objects.filter(pk=newer.pk).update(study_date="2025-01-01")
    assert list(reading_worklist_for(radiologist, policy_for())) == [here]
    assert list(reading_worklist_for(radiologist, policy_for("north"))) == [older, newer]
    api = _token_client(radiologist)
    answer = api.get("/api/v1/reading/worklist/", {"site": "north"}).json()
    assert [row["id"] for row in answer["results"]] == [older.pk, newer.pk]
    assert {row["site"] for row in answer["results"]} == {"north"}
    assert {row["exam_score"] for row in answer["results"]} == {None}  # north hides the AI until read
    refused = api.get("/api/v1/reading/worklist/", {"site": "nowhere"})
    assert refused.status_code == 400 and refused.json()["error"]["fields"].keys() == {"site"}


def test_the_reading_page_shows_a_sites_cases_and_names_an_unknown_site(client, radiologist, north):
    at_site(make_study("S2", 0.5, True, seed=1), "north")
    make_study("S1", 0.5, True)
    client.force_login(radiologist)
    page = client.get(reverse("reading"), {"site": "north"}).content.decode()
    assert "North unit" in page and page.count('data-study="') == 1
    page = client.get(reverse("reading"), {"site": "nowhere"}).content.decode()
    assert "unknown site &#x27;nowhere&#x27;" in page and page.count('data-study="') == 1


def test_a_policy_is_set_per_site_and_an_unknown_site_is_refused(client, admin_user, north):
    client.force_login(admin_user)
    response = client.post(
        reverse("reading-policy") + "?site=north",
        {"site": "north", "mode": "double", "resolution": "arbitrator", "order": "date", "lock_minutes": 15},
    )
    assert response.status_code == 302 and response["Location"].endswith("?site=north")
    assert policy_for("north").mode == "double" and policy_for().mode == "single"
    assert AuditEvent.objects.get(action="reading_policy_set").detail["site"] == "north"
    with pytest.raises(PortalError, match="unknown site 'south'"):
        set_policy(user=admin_user, mode="double", site="south")
    api = _token_client(admin_user)
    refused = api.post("/api/v1/reading/policy/", {"mode": "double", "site": "south"}, format="json")
    assert refused.status_code == 400 and refused.json()["error"]["fields"].keys() == {"site"}
    assert ReadingPolicy.objects.count() == 1
    shown = api.get("/api/v1/reading/policy/", {"site": "north"}).json()
    assert shown["current"]["mode"] == "double" and shown["sites"] == {"default": "single", "north": "double"}


def test_a_worklist_in_ai_score_order_is_refused_when_the_ai_is_hidden(admin_user):
    with pytest.raises(PortalError, match="order it by date or age") as refused:
        set_policy(user=admin_user, mode="double", blind_ai=True, order="score")
    assert refused.value.field == "order" and not ReadingPolicy.objects.exists()
    policy = set_policy(user=admin_user, mode="double", blind_ai=True)
    assert policy.order == "date"


def test_a_site_hiding_the_ai_hides_it_from_its_readers_not_from_an_admin(admin_user, radiologist, north):
    assert not ai_visibility(radiologist).hides_any
    set_policy(user=admin_user, mode="double", site="north", blind_ai=True)
    assert ai_visibility(radiologist).blinded_sites == {"north"} and not ai_visibility(admin_user).hides_any


def test_an_upload_names_its_site_and_an_unknown_one_leaves_nothing_behind(api, media_root, north):
    created = api.post("/api/v1/images/", {"file": _upload("a.dcm", seed=1), "site": "north"}, format="multipart")
    assert created.status_code == 201, created.json()
    assert Image.objects.get(pk=created.json()["id"]).study.site == "north"
    body = api.generic(
        "POST", "/api/v1/images/?site=north", to_bytes(mg_dataset(seed=2)), content_type="application/dicom"
    )
    assert body.status_code == 201 and Image.objects.get(pk=body.json()["id"]).study.site == "north"
    before = stored_files(media_root)
    refused = api.post("/api/v1/images/", {"file": _upload("b.dcm", seed=3), "site": "south"}, format="multipart")
    assert refused.status_code == 400 and refused.json()["error"]["fields"].keys() == {"site"}
    assert "unknown site 'south'" in refused.json()["error"]["message"]
    assert Image.objects.count() == 2 and stored_files(media_root) == before
    plain = api.post("/api/v1/images/", {"file": _upload("c.dcm", seed=4)}, format="multipart")
    assert Image.objects.get(pk=plain.json()["id"]).study.site == "default"
    listed = api.get("/api/v1/studies/", {"site": "north"}).json()
    assert {row["site"] for row in listed["results"]} == {"north"} and len(listed["results"]) == 2


def test_an_admin_moves_a_study_to_another_site_audited_and_cannot_delete_a_site(client, admin_user, north):
    study = make_study("S1", 0.5, True)
    client.force_login(admin_user)
    form = {"site": "north", "assigned_to": "", "images-TOTAL_FORMS": "1", "images-INITIAL_FORMS": "1"}
    response = client.post(reverse("admin:screening_study_change", args=[study.pk]), form)
    assert response.status_code == 302
    assert Study.objects.get(pk=study.pk).site == "north"
    event = AuditEvent.objects.get(action="study_site_change")
    assert event.detail == {"from": "default", "to": "north"} and event.user == admin_user
    typo = client.post(reverse("admin:screening_study_change", args=[study.pk]), {**form, "site": "nort"})
    assert typo.status_code == 200 and Study.objects.get(pk=study.pk).site == "north"
    assert client.post(reverse("admin:screening_site_delete", args=[north.pk]), {"post": "yes"}).status_code == 403
    renamed = client.post(reverse("admin:screening_site_change", args=[north.pk]), {"code": "south", "name": "N"})
    assert renamed.status_code == 302 and Site.objects.get(pk=north.pk).code == "north"
    assert AuditEvent.objects.filter(action="site_change").exists()


def test_only_admins_manage_sites(client, radiologist, api_client_user):
    for user in (radiologist, api_client_user):
        client.force_login(user)
        assert client.get(reverse("admin:screening_site_changelist")).status_code in (302, 403)
        assert client.get(reverse("reading-policy"), {"site": "default"}).status_code == 403


def _upload(name: str, seed: int):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, to_bytes(mg_dataset(seed=seed)), content_type="application/dicom")


def test_a_site_code_with_a_nul_byte_or_punctuation_is_a_400_not_a_database_error(admin_user, api):
    """Found by the API fuzzer: PostgreSQL refuses a NUL byte in a text parameter (a 500 before this)."""
    admin = _token_client(admin_user)
    for code in ("\x00north", "north; drop", "x" * 65):
        for client, path in ((admin, "/api/v1/reading/policy/"), (admin, "/api/v1/reading/worklist/")):
            response = client.get(path, {"site": code})
            assert response.status_code == 400 and response.json()["error"]["fields"].keys() == {"site"}
        upload = api.post("/api/v1/images/", {"file": _upload("n.dcm", seed=9), "site": code}, format="multipart")
        assert upload.status_code == 400, upload.json()
    assert not Image.objects.exists()


def test_the_worklists_count_at_most_a_thousand_cases(radiologist, client, monkeypatch):
    """Counting every waiting case cost 50 ms a request at 75,000 (bench/api.py): the worklists count up to
    a cap and say when more wait."""
    from screening.api.pagination import CappedPaginator

    monkeypatch.setattr(CappedPaginator, "CAP", 2)
    for i in range(4):
        make_study(f"S{i}", 0.1 * i, False, seed=i)
    api = _token_client(radiologist)
    body = api.get("/api/v1/reading/worklist/").json()
    assert (body["count"], body["count_capped"], len(body["results"])) == (2, True, 4)
    client.force_login(radiologist)
    assert "2+ to read" in client.get(reverse("reading")).content.decode()
    monkeypatch.setattr(CappedPaginator, "CAP", 10)
    body = api.get("/api/v1/reading/worklist/").json()
    assert (body["count"], body["count_capped"]) == (4, False)
