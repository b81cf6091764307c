"""Monitoring records. Imported by screening.models, so they belong to the screening app.

Runs, their measures and alerts are written once by the monitoring service; an alert's
acknowledgement is a record of its own (append-only), not an edit of the alert.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from screening.core.models import AppendOnlyModel


class ImageStats(models.Model):
    """Simple statistics of one image, the inputs whose drift is watched (computed by a worker from the original)."""

    image = models.OneToOneField("screening.Image", on_delete=models.CASCADE, primary_key=True, related_name="stats")
    source = models.CharField(max_length=32, blank=True, help_text="How the image came in: dicom, stow, api, upload...")
    manufacturer = models.CharField(max_length=64, blank=True)
    model_name = models.CharField(max_length=64, blank=True, help_text="ManufacturerModelName")
    pixel_spacing = models.FloatField(null=True, blank=True, help_text="mm per pixel (row spacing)")
    bits_stored = models.PositiveSmallIntegerField(null=True, blank=True)
    photometric = models.CharField(max_length=16, blank=True)
    mean_intensity = models.FloatField(null=True, blank=True, help_text="Mean presentation value in the breast, 0-1")
    breast_area_cm2 = models.FloatField(null=True, blank=True, help_text="Breast area (needs pixel spacing)")
    breast_fraction = models.FloatField(null=True, blank=True, help_text="Share of the image that is breast")
    error = models.CharField(max_length=200, blank=True, help_text="Why the pixel statistics could not be computed")
    computed = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "image stats"


class MonitoringRun(models.Model):
    """One computation of drift and subgroup performance for one model version."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    model_version = models.ForeignKey("screening.ModelVersion", on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    triggered_by = models.CharField(max_length=16, default="schedule", help_text="schedule or admin")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    window_start = models.DateTimeField(null=True, blank=True)
    window_end = models.DateTimeField(null=True, blank=True)
    reference = models.JSONField(
        default=dict, blank=True, help_text="What the window was compared with (basis, n, distributions)"
    )
    subgroups = models.JSONField(default=dict, blank=True, help_text="Performance by subgroup, with CIs")
    score_summary = models.JSONField(default=dict, blank=True, help_text="Score quantiles of the window")
    error = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["model_version", "-created"], name="monitoring_run_by_version")]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["queued", "running", "done", "failed"]), name="monitoring_run_status_valid"
            ),
            models.UniqueConstraint(
                fields=["model_version"],
                condition=Q(status__in=["queued", "running"]),
                name="one_active_monitoring_run",
            ),
        ]


class DriftMeasure(models.Model):
    """One feature's drift in one run, for the whole programme ("" site and source) or one site or source."""

    run = models.ForeignKey(MonitoringRun, on_delete=models.CASCADE, related_name="measures")
    feature = models.CharField(max_length=32)
    site = models.CharField(max_length=64, blank=True)
    source = models.CharField(max_length=32, blank=True)
    value = models.FloatField(null=True, blank=True, help_text="PSI; empty when too few images")
    threshold = models.FloatField()
    n = models.PositiveIntegerField()
    n_reference = models.PositiveIntegerField()
    drifted = models.BooleanField(default=False)
    bins = models.JSONField(default=list, blank=True, help_text="[label, reference share, window share] per bin")

    class Meta:
        indexes = [models.Index(fields=["run", "feature"], name="drift_by_run")]


class MonitoringAlert(AppendOnlyModel):
    """Drift past its threshold, or a subgroup's sensitivity significantly below the validated figure."""

    class Kind(models.TextChoices):
        DRIFT = "drift", "Drift"
        SENSITIVITY = "sensitivity", "Subgroup sensitivity"

    run = models.ForeignKey(MonitoringRun, on_delete=models.CASCADE, related_name="alerts")
    model_version = models.ForeignKey("screening.ModelVersion", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    key = models.CharField(max_length=160, help_text="What crossed: feature/site/source, or subgroup")
    message = models.CharField(max_length=300)
    value = models.FloatField(null=True, blank=True)
    threshold = models.FloatField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["model_version", "kind", "key", "-created"], name="alert_by_key")]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=["drift", "sensitivity"]), name="monitoring_alert_kind_valid")
        ]


class AlertAcknowledgement(AppendOnlyModel):
    """An admin has seen an alert (and says what is done about it). One per alert."""

    alert = models.OneToOneField(MonitoringAlert, on_delete=models.CASCADE, related_name="acknowledgement")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    note = models.CharField(max_length=500, blank=True)
    created = models.DateTimeField(auto_now_add=True)
