"""The Django admin is a window onto the records: nothing there adds, changes or deletes a case
record, superusers included; no admin page fails; a study goes only with a reason."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Group, Permission
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)
from rest_framework.authtoken.models import Token

from screening.intake.services.ingest import ingest_file
from screening.intake.services.studies import delete_study
from screening.models import (
    AuditEvent,
    DicomDestination,
    DicomExport,
    DicomPeer,
    Finding,
    Hl7Destination,
    Hl7Export,
    Image,
    ModelVersion,
    NoteTemplate,
    Patient,
    Prediction,
    Review,
    Study,
    TrainingRun,
)
from screening.reading.services.outcomes import OutcomeInput, record_outcome
from screening.reading.services.reading import acquire_lock, set_policy
from screening.reading.services.reviews import FindingInput, review_submit
from tests.conftest import _user, stored_files
from tests.dicom_factory import mg_dataset, to_bytes

pytestmark = pytest.mark.django_db

CASE_RECORDS = (Patient, Image, Prediction, Review, AuditEvent)


@pytest.fixture
def superuser(db, django_user_model):
    return django_user_model.objects.create_superuser(username="root", password="a-long-test-password", email="")


@pytest.fixture
def staff_admin(admin_user):
    """A staff account in the admin role holding every screening permission Django has."""
    admin_user.user_permissions.set(Permission.objects.filter(content_type__app_label="screening"))
    return admin_user


@pytest.fixture(params=["superuser", "staff_admin"])
def any_admin(request):
    return request.getfixturevalue(request.param)


@pytest.fixture
def reviewed(radiologist):
    """A study with an image, a done prediction with its heatmap, and a review with a finding."""
    image = ingest_file(file=io.BytesIO(to_bytes(mg_dataset())), filename="x.dcm", via="test").image
    version = ModelVersion.objects.create(name="v-test", checkpoint="test.pt", threshold=0.5)
    heatmap = default_storage.save("heatmaps/ab/abc.png", ContentFile(b"not really a png"))
    Prediction.objects.create(image=image, model_version=version, status="done", probability=0.7, heatmap=heatmap)
    review = review_submit(
        study=image.study,
        radiologist=radiologist,
        decision="abnormal",
        birads=4,
        findings=[FindingInput(image.pk, "mass", 10, 10, 20, 20)],
    )
    return review


@pytest.fixture
def one_of_everything(reviewed, superuser, radiologist, admin_user, api_client_user):
    """A row of every model the admin shows, and the audit trail of a deleted study."""
    TrainingRun.objects.create(status="failed", triggered_by="test", error="test")
    DicomPeer.objects.create(ae_title="PACS", host="10.0.0.5")
    DicomDestination.objects.create(ae_title="PACS", host="10.0.0.5", port=4242)
    NoteTemplate.objects.create(name="Benign", text="Benign findings.")  # issue 24
    DicomExport.objects.create(
        study=reviewed.study,
        review=reviewed,
        kind="decision",
        destination="PACS@10.0.0.5:4242",
        status="failed",
        attempts=5,
        error="could not connect to PACS@10.0.0.5:4242",
        sop_instance_uid="2.25.1",
    )
    ris = Hl7Destination.objects.create(name="RIS", host="10.0.0.6", port=2575)  # issue 24
    Hl7Export.objects.create(
        study=reviewed.study,
        review=reviewed,
        destination=ris,
        destination_label=str(ris),
        control_id="0123456789abcdef0123",
        result_status="F",
        status="failed",
        attempts=5,
        error="gave up after 5 attempts: AE: Unknown order",
        ack_code="AE",
    )
    Group.objects.get_or_create(name="radiologist")
    Token.objects.create(user=api_client_user)
    every = IntervalSchedule.objects.create(every=10, period=IntervalSchedule.MINUTES)
    CrontabSchedule.objects.create(minute="0", hour="3")
    SolarSchedule.objects.create(event="sunrise", latitude=0, longitude=0)
    ClockedSchedule.objects.create(clocked_time=timezone.now() + dt.timedelta(days=1))
    PeriodicTask.objects.create(name="sweep", task="screening.tasks.sweep", interval=every)
    set_policy(user=admin_user, mode="double")  # reading workflow (issue 15)
    acquire_lock(study=reviewed.study, user=radiologist)
    record_outcome(item=OutcomeInput(study=reviewed.study, laterality="L", result="benign"), user=admin_user)
    if apps.is_installed("axes"):  # the login guard's records
        failed = {
            "user_agent": "test",
            "ip_address": "10.0.0.9",
            "username": "x",
            "http_accept": "*/*",
            "path_info": "/",
        }
        apps.get_model("axes", "AccessAttempt").objects.create(
            **failed, get_data="", post_data="", failures_since_start=1
        )
        apps.get_model("axes", "AccessFailureLog").objects.create(**failed)
        apps.get_model("axes", "AccessLog").objects.create(**failed)
    gone = ingest_file(file=io.BytesIO(to_bytes(mg_dataset(patient_id="GONE", seed=1))), filename="g.dcm").image.study
    delete_study(study=gone, user=superuser, reason="test upload")
    return reviewed


def test_nobody_can_forge_an_audit_event_in_the_admin(client, any_admin, reviewed, radiologist):
    client.force_login(any_admin)
    before = AuditEvent.objects.count()
    forged = {
        "username": radiologist.username,
        "user": radiologist.pk,
        "action": "review_submit",
        "study": reviewed.study_id,
        "object_type": "review",
        "object_id": str(reviewed.pk),
        "ip_address": "10.0.0.1",
        "detail": '{"decision": "normal", "birads": 1}',
        "at_0": "2020-01-01",
        "at_1": "10:00:00",
    }
    assert client.get("/admin/screening/auditevent/add/").status_code == 403
    assert client.post("/admin/screening/auditevent/add/", forged).status_code == 403
    assert AuditEvent.objects.count() == before
    assert not AuditEvent.objects.filter(ip_address="10.0.0.1").exists()
    trail = client.get(reverse("study-audit", args=[reviewed.study_id]))
    assert b"10.0.0.1" not in trail.content


def test_nobody_can_edit_a_submitted_review_in_the_admin(client, any_admin, reviewed):
    client.force_login(any_admin)
    url = reverse("admin:screening_review_change", args=[reviewed.pk])
    events = AuditEvent.objects.count()
    edit = {
        "study": reviewed.study_id,
        "version": reviewed.version,
        "radiologist": reviewed.radiologist_id,
        "decision": "normal",
        "birads": 1,
        "density": "",
        "note": "rewritten",
        "findings-TOTAL_FORMS": "0",
        "findings-INITIAL_FORMS": "0",
    }
    assert client.post(url, edit).status_code == 403
    assert client.post(reverse("admin:screening_review_delete", args=[reviewed.pk]), {"post": "yes"}).status_code == 403
    review = Review.objects.get()
    assert (review.version, review.decision, review.birads, review.note) == (1, "abnormal", 4, "")
    assert Finding.objects.filter(review=review).count() == 1
    assert AuditEvent.objects.count() == events


def test_case_records_can_be_viewed_but_not_added_changed_or_deleted_in_the_admin(rf, superuser, reviewed):
    request = rf.get("/admin/")
    request.user = superuser
    for model in CASE_RECORDS:
        model_admin = admin.site._registry[model]
        obj = model.objects.first()
        assert model_admin.has_view_permission(request, obj), model
        assert not model_admin.has_add_permission(request), model
        assert not model_admin.has_change_permission(request, obj), model
        assert not model_admin.has_delete_permission(request, obj), model
        for inline in model_admin.get_inline_instances(request, obj):
            assert not (
                inline.has_add_permission(request, obj)
                or inline.has_change_permission(request, obj)
                or inline.has_delete_permission(request, obj)
            ), inline
    study_admin = admin.site._registry[Study]
    for inline in study_admin.get_inline_instances(request, reviewed.study):
        assert not inline.has_add_permission(request, reviewed.study), inline
    assert not study_admin.has_add_permission(request)
    assert not study_admin.has_delete_permission(request, reviewed.study)


def test_no_admin_page_fails(client, superuser, one_of_everything):
    """Every registered model's changelist, add page and the change page of one row; new models are covered."""
    client.force_login(superuser)
    client.raise_request_exception = False  # list every failing page, not the first exception
    failures = []
    for model in admin.site._registry:
        name = f"admin:{model._meta.app_label}_{model._meta.model_name}"
        obj = model._default_manager.first()
        if obj is None:
            failures.append(f"{name}: no row; add one to the one_of_everything fixture")
            continue
        for url in (
            reverse(f"{name}_changelist"),
            reverse(f"{name}_add"),
            reverse(f"{name}_change", args=[quote(obj.pk)]),
        ):
            code = client.get(url).status_code
            if code not in (200, 302, 403):
                failures.append(f"{url}: {code}")
    assert not failures, "\n".join(failures)


def test_the_study_add_page_answers_without_an_error(client, superuser):
    client.force_login(superuser)
    assert client.get("/admin/screening/study/add/").status_code == 403  # studies come from ingest


def test_the_admin_shows_the_events_of_a_deleted_study(client, superuser, reviewed):
    study_id = reviewed.study_id
    delete_study(study=reviewed.study, user=superuser, reason="sent to the wrong portal")
    client.force_login(superuser)
    listing = client.get(reverse("admin:screening_auditevent_changelist"))
    assert listing.status_code == 200 and f"Study #{study_id}".encode() in listing.content
    event = AuditEvent.objects.get(action="study_delete")
    page = client.get(reverse("admin:screening_auditevent_change", args=[event.pk]))
    assert page.status_code == 200 and b"sent to the wrong portal" in page.content


def test_the_stock_delete_of_a_study_is_not_reachable(client, superuser, reviewed):
    client.force_login(superuser)
    study = reviewed.study
    delete_url = reverse("admin:screening_study_delete", args=[study.pk])
    assert client.post(delete_url, {"post": "yes"}).status_code == 403
    bulk = {"action": "delete_selected", "_selected_action": [study.pk], "post": "yes"}
    client.post(reverse("admin:screening_study_changelist"), bulk)
    assert Study.objects.filter(pk=study.pk).exists()
    assert (
        client.post(reverse("admin:screening_patient_delete", args=[study.patient_id]), {"post": "yes"}).status_code
        == 403
    )
    assert Patient.objects.filter(pk=study.patient_id).exists()


def test_an_admin_deletes_a_study_only_with_a_reason(
    client, any_admin, reviewed, media_root, django_capture_on_commit_callbacks
):
    client.force_login(any_admin)
    study = reviewed.study
    url = reverse("admin:screening_study_delete_with_reason")
    action = {"action": "delete_with_reason", "_selected_action": [study.pk]}
    change_page = client.get(reverse("admin:screening_study_change", args=[study.pk])).content.decode()
    assert f"{url}?ids={study.pk}" in change_page
    offered = client.post(reverse("admin:screening_study_changelist"), action)
    assert offered.status_code == 302 and offered.url == f"{url}?ids={study.pk}"
    form = client.get(offered.url)
    assert form.status_code == 200 and b'name="reason"' in form.content
    refused = client.post(url, {"ids": str(study.pk), "reason": "   "})
    assert refused.status_code == 200 and b"give the reason" in refused.content
    assert Study.objects.filter(pk=study.pk).exists() and stored_files(media_root)
    with django_capture_on_commit_callbacks(execute=True):
        done = client.post(url, {"ids": str(study.pk), "reason": "duplicate upload"})
    assert done.status_code == 302
    assert not Study.objects.filter(pk=study.pk).exists()
    assert stored_files(media_root) == []
    event = AuditEvent.objects.get(action="study_delete")
    assert event.study_id == study.pk and event.username == any_admin.username
    assert event.detail["reason"] == "duplicate upload"


def test_a_radiologist_cannot_delete_a_study(client, radiologist, reviewed):
    url = reverse("admin:screening_study_delete_with_reason")
    client.force_login(radiologist)
    refused = client.post(url, {"ids": str(reviewed.study_id), "reason": "mine to delete"})
    assert refused.status_code == 302 and "/admin/login/" in refused.url
    # Staff status and every model permission do not make a radiologist an admin.
    radiologist.is_staff = True
    radiologist.save()
    radiologist.user_permissions.set(Permission.objects.filter(content_type__app_label="screening"))
    assert client.post(url, {"ids": str(reviewed.study_id), "reason": "mine to delete"}).status_code == 403
    assert Study.objects.filter(pk=reviewed.study_id).exists()
    assert not AuditEvent.objects.filter(action="study_delete").exists()


def test_assigning_a_study_in_the_admin_is_audited(client, superuser, radiologist, reviewed):
    client.force_login(superuser)
    study = reviewed.study
    changelist = reverse("admin:screening_study_changelist")
    client.post(changelist, {"action": "assign_to_me", "_selected_action": [study.pk]})
    assert Study.objects.get(pk=study.pk).assigned_to == superuser
    form = {"assigned_to": radiologist.pk, "site": "default", "images-TOTAL_FORMS": "1", "images-INITIAL_FORMS": "1"}
    change = client.post(reverse("admin:screening_study_change", args=[study.pk]), form)
    assert change.status_code == 302
    study.refresh_from_db()
    assert study.assigned_to == radiologist and study.status == "reported"  # nothing else changed
    assigned = AuditEvent.objects.filter(action="study_assign", study=study).order_by("at")
    assert [e.detail["assigned_to"] for e in assigned] == ["root", "rad"]


def test_a_staff_member_outside_the_admin_role_gets_no_delete_action(client, django_user_model, reviewed):
    helper = _user(django_user_model, "helper", None, is_staff=True)
    helper.user_permissions.set(Permission.objects.filter(content_type__app_label="screening"))
    client.force_login(helper)
    page = client.get(reverse("admin:screening_study_changelist"))
    assert page.status_code == 200 and b"delete_with_reason" not in page.content
    assert Image.objects.filter(study=reviewed.study).exists()


def test_the_admin_searches_by_no_patient_identifier():
    """A search goes in the query string, and so into access logs and browser history."""
    identity = {"patient_id", "name", "birth_date", "accession_number"}
    for model, model_admin in admin.site._registry.items():
        if model._meta.app_label == "screening":
            searched = {field.lstrip("^=@").split("__")[-1] for field in model_admin.search_fields}
            assert not searched & identity, model


RECORDS_NOBODY_CHANGES = {
    Patient,
    Image,
    Prediction,
    Review,
    Finding,
    AuditEvent,
    ModelVersion,
    TrainingRun,
    DicomExport,
    Hl7Export,
}


@pytest.mark.parametrize("role", ["anonymous", "radiologist", "api_client", "outsider", "admin", "superuser"])
def test_the_admin_permission_matrix(client, role, one_of_everything, radiologist, api_client_user, outsider):
    """Every registered model x {changelist, add, change, delete} x role, GET and POST.

    Only the admin role reaches the admin; there it views case records and models but
    never adds, changes or deletes them (superusers included); users and assignments
    stay manageable.
    """
    users = {
        "radiologist": radiologist,
        "api_client": api_client_user,
        "outsider": outsider,
        "admin": _user(type(radiologist), "matrix-admin", "admin", is_staff=True),
        "superuser": type(radiologist).objects.get(username="root"),
    }
    if role != "anonymous":
        client.force_login(users[role])
    client.raise_request_exception = False
    problems = []
    for model in admin.site._registry:
        name = f"admin:{model._meta.app_label}_{model._meta.model_name}"
        obj = model._default_manager.first()
        pages = {
            "changelist": reverse(f"{name}_changelist"),
            "add": reverse(f"{name}_add"),
            "change": reverse(f"{name}_change", args=[quote(obj.pk)]),
            "delete": reverse(f"{name}_delete", args=[quote(obj.pk)]),
        }
        for page, url in pages.items():
            for method in ("get", "post"):
                code = getattr(client, method)(url, {}).status_code
                if code >= 500:
                    problems.append(f"{method.upper()} {url}: {code}")
                elif role not in ("admin", "superuser"):
                    if not (code == 302 or code == 403):
                        problems.append(f"{method.upper()} {url}: {code}, expected the admin login or 403")
                elif model in RECORDS_NOBODY_CHANGES and page != "changelist" and method == "post" and code != 403:
                    problems.append(f"{method.upper()} {url}: {code}, expected 403 (read-only record)")
                elif model._meta.app_label == "screening" and page == "changelist" and method == "get" and code != 200:
                    problems.append(f"GET {url}: {code}, expected the admin role to view it")
    assert not problems, "\n".join(problems)
    for model in RECORDS_NOBODY_CHANGES:  # and nothing changed on the way
        assert model._default_manager.exists()
