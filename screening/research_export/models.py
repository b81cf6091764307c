"""Research export records. Imported by screening.models, so they belong to the screening app."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class ResearchProject(models.Model):
    """An export project: its exports share one secret key, so the same woman, study and image get the same
    new IDs and UIDs (and dates the same shift) in every export of the project, and in no other project."""

    name = models.CharField(max_length=100, unique=True)
    key = models.CharField(max_length=64, editable=False, help_text="Secret; never shown or exported")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class ResearchExport(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Ready to download"
        DOWNLOADED = "downloaded", "Downloaded"
        FAILED = "failed", "Failed"

    project = models.ForeignKey(ResearchProject, on_delete=models.PROTECT, related_name="exports")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    reason = models.TextField(help_text="Why the data leave the portal (audited)")
    filters = models.JSONField(default=dict, blank=True)
    options = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    progress = models.JSONField(default=dict, blank=True, help_text="images done and total, while it runs")
    summary = models.JSONField(default=dict, blank=True, help_text="counts: studies, images, left out and why")
    archive = models.FileField(max_length=255, blank=True)
    error = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)
    finished = models.DateTimeField(null=True, blank=True)
    downloaded = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["queued", "running", "done", "downloaded", "failed"]),
                name="research_export_status_valid",
            ),
        ]
