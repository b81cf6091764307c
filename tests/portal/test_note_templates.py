"""Note templates (issue 24): admins keep them in the admin (audited, never deleted); readers get the active ones."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from screening.models import AuditEvent, NoteTemplate

pytestmark = pytest.mark.django_db


def test_an_admin_adds_a_note_template_audited_and_cannot_delete_it(admin_user):
    client = Client()
    client.force_login(admin_user)
    response = client.post(
        reverse("admin:screening_notetemplate_add"), {"name": "Cysts", "text": "Simple cysts.", "active": "on"}
    )
    assert response.status_code == 302, response.content[:500]
    template = NoteTemplate.objects.get(name="Cysts")
    event = AuditEvent.objects.get(action="note_template_add")
    assert event.detail == {"name": "Cysts", "active": True}
    response = client.get(reverse("admin:screening_notetemplate_delete", args=[template.pk]))
    assert response.status_code == 403 and NoteTemplate.objects.filter(pk=template.pk).exists()


def test_a_radiologist_cannot_manage_note_templates(radiologist):
    client = Client()
    client.force_login(radiologist)
    response = client.get(reverse("admin:screening_notetemplate_add"))
    assert response.status_code in (302, 403) and not NoteTemplate.objects.exists()
