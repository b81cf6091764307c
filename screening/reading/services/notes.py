"""Note templates (issue 24): text an admin keeps for the readers' notes. Added and edited (audited), retired
rather than deleted."""

from __future__ import annotations

from django.db import transaction

from screening.audit import actions
from screening.audit.services import record_event
from screening.models import NoteTemplate


@transaction.atomic
def save_note_template(template: NoteTemplate, *, created: bool, user=None, ip_address: str | None = None):
    template.save()
    record_event(
        action=actions.NOTE_TEMPLATE_ADD if created else actions.NOTE_TEMPLATE_CHANGE,
        user=user,
        obj=template,
        ip_address=ip_address,
        detail={"name": template.name, "active": template.active},
    )
    return template
