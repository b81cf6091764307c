"""Reads of the audit trail."""

from __future__ import annotations

from django.db.models import (
    QuerySet,
)

from screening.models import (
    AuditEvent,
)


def audit_trail(study_id: int) -> QuerySet[AuditEvent]:
    """A study's events by its id: the trail outlives a deleted study."""
    return AuditEvent.objects.filter(study_id=study_id).order_by("-at")
