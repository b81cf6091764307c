"""Reads of the audit trail."""

from __future__ import annotations

from django.db.models import (
    F,
    QuerySet,
)
from django.db.models.functions import Coalesce

from screening.models import (
    AuditEvent,
    Study,
)

UNREAD = [Study.Status.NEW, Study.Status.PREDICTED, Study.Status.IN_REVIEW]
WORKLIST_ORDERINGS = {
    # name: (label, order_by) -- unread studies always come first
    # Highest score first, unscored last, then newest: the expression of the unread_by_score index.
    "score": ("AI score", [Coalesce("exam_score", -1.0).desc(), "-id"]),
    "uncertainty": ("Nearest the threshold", [F("uncertainty").asc(nulls_last=True), "-id"]),
    "date": ("Newest first", [F("study_date").desc(nulls_last=True), "-id"]),
    "date_asc": ("Oldest first", [F("study_date").asc(nulls_last=True), "id"]),
    "patient": ("Patient", ["patient__patient_id", "-id"]),
    "status": ("Status", ["status", F("exam_score").desc(nulls_last=True), "-id"]),
}
# Orderings that read the AI result, refused to a user from whom any of it is hidden (screening.blinding);
# "status" then breaks its ties by date for them.
AI_ORDERINGS = {"score", "uncertainty"}
STATUS_BY_DATE = ["status", F("study_date").desc(nulls_last=True), "-id"]


def audit_trail(study_id: int) -> QuerySet[AuditEvent]:
    """A study's events by its id: the trail outlives a deleted study."""
    return AuditEvent.objects.filter(study_id=study_id).order_by("-at")
