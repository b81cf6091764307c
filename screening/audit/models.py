"""The audit trail: append-only events, one per change or read of patient data.

Part of the single `screening` app (tables, label and migrations unchanged): see `screening.models`.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from screening.core.models import AppendOnlyModel
from screening.intake.models import Study


class AuditEvent(AppendOnlyModel):
    """Who did what, when and from where. Append-only; survives the deletion of its study or user.

    The study and user keys carry no database constraint and are never nulled: the
    trail of a deleted study stays readable under its old id, and no row is rewritten.
    """

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    username = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=32)
    study = models.ForeignKey(
        Study,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="audit_events",
    )
    object_type = models.CharField(max_length=32, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        indexes = [models.Index(fields=["study", "-at"], name="audit_by_study")]
        ordering = ["-at"]
