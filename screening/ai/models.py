"""Machine-learning model versions, their predictions and training runs (the model registry's records).

Part of the single `screening` app (tables, label and migrations unchanged): see `screening.models`.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from screening.intake.models import Image


class ModelVersion(models.Model):
    class Status(models.TextChoices):
        CHAMPION = "champion", "Champion"
        CHALLENGER = "challenger", "Challenger"
        REJECTED = "rejected", "Rejected"
        RETIRED = "retired", "Retired"

    name = models.CharField(max_length=100, unique=True)
    checkpoint = models.CharField(max_length=255, help_text="Checkpoint path (shipped file or storage name).")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CHALLENGER)
    threshold = models.FloatField(
        help_text="Breast-level operating point of the default source kind: a breast at or above it is flagged, and "
        "its exam with it. Each kind's image, breast and region thresholds are in metrics['sources']."
    )
    metrics = models.JSONField(default=dict, blank=True)
    note = models.TextField(blank=True)
    servable = models.BooleanField(
        default=True, help_text="False once its checkpoint failed to load: it predicts nothing until fixed."
    )
    load_error = models.TextField(blank=True, help_text="Why the checkpoint could not be loaded.")
    created = models.DateTimeField(auto_now_add=True)
    promoted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["status"], condition=Q(status="champion"), name="one_champion"),
            models.CheckConstraint(condition=Q(threshold__gte=0, threshold__lte=1), name="model_threshold_unit"),
        ]

    def __str__(self) -> str:
        return self.name


class Prediction(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="predictions")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="predictions")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    probability = models.FloatField(null=True, blank=True)
    heatmap = models.FileField(max_length=255, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    preprocess_ms = models.FloatField(null=True, blank=True)
    inference_ms = models.FloatField(null=True, blank=True)
    source_kind = models.CharField(
        max_length=8, blank=True, default="", help_text="'film' or 'digital': the calibration that scored it."
    )
    logit = models.FloatField(
        null=True,
        blank=True,
        help_text="The model's uncalibrated image logit: the breast and exam scores are computed from the logits "
        "of a study's images by the same version's exam model (ml.exam), as in its evaluation.",
    )
    regions = models.JSONField(
        default=list,
        blank=True,
        help_text="Top suspicious regions: [{x, y, width, height, probability}] in original pixel coordinates.",
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["image", "model_version"], name="one_prediction_per_model"),
            models.CheckConstraint(
                condition=Q(probability__isnull=True) | Q(probability__gte=0, probability__lte=1),
                name="prediction_probability_unit",
            ),
            models.CheckConstraint(
                condition=~Q(status="done") | Q(probability__isnull=False), name="done_prediction_has_probability"
            ),
        ]
        indexes = [
            models.Index(fields=["status", "updated"], name="prediction_sweep"),
            # Keyset pages of the prediction list (newest first), filtered by status or model version.
            models.Index(fields=["status", "-id"], name="prediction_list_by_status"),
            models.Index(fields=["model_version", "-id"], name="prediction_list_by_version"),
        ]


class TrainingRun(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    triggered_by = models.CharField(max_length=32, default="schedule")
    snapshot_hash = models.CharField(max_length=64, blank=True)
    data_summary = models.JSONField(default=dict, blank=True)
    progress = models.JSONField(default=dict, blank=True)
    candidate = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="training_runs"
    )
    error = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["status"], condition=Q(status="running"), name="one_running_training"),
        ]
