"""Admin powers split: accounts and API tokens are managed by superusers only; a key is shown once.

A non-superuser admin used to see every user's full API token (DRF's token admin), set other users'
passwords, make itself superuser, and so act with another user's token.
"""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, Permission
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from screening.accounts.roles import sync_admin_group_permissions
from screening.models import AuditEvent, Image, Study
from tests.portal.reading_fixtures import make_study

pytestmark = pytest.mark.django_db
PASSWORD = "a-long-test-password"


@pytest.fixture
def staff_admin(admin_user):
    sync_admin_group_permissions()  # the admin group's permissions, as after `migrate`
    return admin_user


@pytest.fixture
def superuser(db, django_user_model):
    return django_user_model.objects.create_superuser(username="root", password=PASSWORD, email="")


def test_an_admin_sees_no_token_and_cannot_issue_one(client, staff_admin, api_client_user, radiologist):
    key = Token.objects.create(user=api_client_user).key
    client.force_login(staff_admin)
    pages = [
        reverse("admin:index"),
        reverse("admin:auth_user_changelist"),
        reverse("admin:auth_user_change", args=[api_client_user.pk]),
    ]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        assert key not in response.content.decode(), url
    assert "issue_api_token" not in client.get(reverse("admin:auth_user_changelist")).content.decode()
    assert client.get("/admin/authtoken/tokenproxy/").status_code == 404  # DRF's key list is gone
    response = client.post(
        reverse("admin:auth_user_changelist"), {"action": "issue_api_token", "_selected_action": [radiologist.pk]}
    )
    assert key not in response.content.decode()
    assert not Token.objects.filter(user=radiologist).exists()
    assert Token.objects.get(user=api_client_user).key == key


def test_an_admin_cannot_set_a_password_or_make_itself_superuser(client, staff_admin, radiologist):
    client.force_login(staff_admin)
    password_url = reverse("admin:auth_user_password_change", args=[radiologist.pk])
    assert client.get(password_url).status_code == 403
    response = client.post(password_url, {"password1": "Another-long-pass-1", "password2": "Another-long-pass-1"})
    assert response.status_code == 403
    radiologist.refresh_from_db()
    assert radiologist.check_password(PASSWORD)
    own = reverse("admin:auth_user_change", args=[staff_admin.pk])
    form = {"username": "boss", "is_active": "on", "is_staff": "on", "is_superuser": "on"}
    assert client.post(own, form).status_code == 403
    staff_admin.refresh_from_db()
    assert not staff_admin.is_superuser
    assert client.get(reverse("admin:auth_user_add")).status_code == 403
    assert "pbkdf2" not in client.get(reverse("admin:auth_user_change", args=[radiologist.pk])).content.decode()


def test_permissions_granted_by_hand_do_not_give_an_admin_user_management(client, staff_admin, radiologist):
    staff_admin.user_permissions.add(*Permission.objects.filter(content_type__app_label__in=["auth", "authtoken"]))
    client.force_login(staff_admin)
    assert client.get(reverse("admin:auth_user_password_change", args=[radiologist.pk])).status_code == 403
    assert client.get(reverse("admin:auth_user_add")).status_code == 403


def test_the_admin_group_holds_no_account_or_token_permission(staff_admin):
    granted = set(Group.objects.get(name="admin").permissions.values_list("content_type__app_label", "codename"))
    assert ("auth", "view_user") in granted
    assert not {p for p in granted if p[0] == "authtoken" or p[1] in ("add_user", "change_user", "delete_user")}


def test_a_superuser_issues_a_token_shown_once_and_can_revoke_it(client, superuser, api_client_user):
    old = Token.objects.create(user=api_client_user).key
    client.force_login(superuser)
    changelist = reverse("admin:auth_user_changelist")
    response = client.post(changelist, {"action": "issue_api_token", "_selected_action": [api_client_user.pk]})
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    new = Token.objects.get(user=api_client_user).key
    assert new != old and new in response.content.decode()
    # Shown once: never again on the admin's pages; the old key no longer works, the new one does.
    for url in (changelist, reverse("admin:auth_user_change", args=[api_client_user.pk]), reverse("admin:index")):
        assert new not in client.get(url).content.decode()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {old}")
    assert api.get("/api/v1/studies/").status_code == 401
    api.credentials(HTTP_AUTHORIZATION=f"Token {new}")
    assert api.get("/api/v1/studies/").status_code == 200
    event = AuditEvent.objects.get(action="api_token_issue")
    assert event.username == "root" and event.detail == {"for": api_client_user.get_username()}
    assert new not in str(event.detail)
    client.post(changelist, {"action": "revoke_api_token", "_selected_action": [api_client_user.pk]})
    assert not Token.objects.filter(user=api_client_user).exists()
    assert AuditEvent.objects.filter(action="api_token_revoke").count() == 1


def test_the_migration_takes_back_account_powers_and_unsticks_unread_studies(admin_user, radiologist):
    migration = importlib.import_module("screening.migrations.0018_h21c_admin_powers_and_review_status")
    group = Group.objects.get(name="admin")
    group.permissions.add(*Permission.objects.filter(codename__in=["change_user", "add_token", "view_user"]))
    looked_at = make_study("P-LOOKED", 0.2, False)
    Image.objects.filter(study=looked_at).update(status="predicted")
    waiting = make_study("P-WAITING", None, None, seed=2)  # its image still queued for the AI
    read = make_study("P-READ", 0.2, False, seed=1)
    from screening.reading.services.reviews import review_submit

    review_submit(study=read, radiologist=radiologist, decision="normal", birads=1)
    Study.objects.filter(pk__in=[looked_at.pk, waiting.pk, read.pk]).update(status="in_review")
    migration.take_back(apps, None)
    migration.unstick_unread_studies(apps, None)
    codenames = set(group.permissions.values_list("codename", flat=True))
    assert "change_user" not in codenames and "add_token" not in codenames and "view_user" in codenames
    assert Study.objects.get(pk=looked_at.pk).status == "predicted"
    assert Study.objects.get(pk=waiting.pk).status == "new"
    assert Study.objects.get(pk=read.pk).status == "in_review"  # a read exists: left as it is
