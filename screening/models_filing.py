"""Where an image is filed, and the corrections of it (issue 21, "the wrong woman").

Imported at the end of `screening.models`, so Django sees these models as the app's own.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from screening.models import AppendOnlyModel, Image, Patient, Study


class DemographicsConflict(models.Model):
    """A study that arrived with a PatientID the portal holds, but another name or birth date.

    It is filed under that woman and held: never shown as her prior (nor she as its prior) until an
    admin reconciles it, either as the same woman or by refiling the study to another patient. The
    received and the stored values are kept as they were, so the queue shows what disagreed.
    """

    class Resolution(models.TextChoices):
        OPEN = "", "Waiting for an admin"
        SAME_WOMAN = "same_woman", "Confirmed as the same woman"
        REFILED = "refiled", "Refiled to another patient"

    study = models.OneToOneField(Study, on_delete=models.CASCADE, related_name="demographics_conflict")
    patient = models.ForeignKey(
        Patient, on_delete=models.CASCADE, related_name="+", help_text="The stored woman the study was filed under."
    )
    received_name = models.CharField(max_length=200, blank=True)
    received_birth_date = models.DateField(null=True, blank=True)
    stored_name = models.CharField(max_length=200, blank=True)
    stored_birth_date = models.DateField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    resolution = models.CharField(max_length=12, choices=Resolution.choices, blank=True, default="")
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["created", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(resolution__in=["", "same_woman", "refiled"]), name="demographics_conflict_resolution"
            ),
            models.CheckConstraint(
                condition=Q(resolution="") | Q(resolved_at__isnull=False), name="demographics_conflict_resolved_at"
            ),
        ]
        indexes = [models.Index(fields=["created"], condition=Q(resolution=""), name="demographics_open")]

    def __str__(self) -> str:
        return f"Demographics conflict of study #{self.study_id}"


class Refiling(AppendOnlyModel):
    """One correction of where an image is filed: patient, study, laterality and view, before and after.

    Version n of an image's filing is its n-th correction; the filing before version 1 is the one it
    arrived with, readable as version 1's `from_` values. Append-only (the database refuses updates).
    """

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="refilings")
    version = models.PositiveIntegerField()
    # Studies are kept by id without a constraint: the history stays readable if a study is deleted later.
    from_study = models.ForeignKey(
        Study, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+", null=True, blank=True
    )
    from_patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="+")
    from_laterality = models.CharField(max_length=1, choices=Image.Laterality.choices)
    from_view = models.CharField(max_length=8, choices=Image.View.choices)
    to_study = models.ForeignKey(
        Study, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+", null=True, blank=True
    )
    to_patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="+")
    to_laterality = models.CharField(max_length=1, choices=Image.Laterality.choices)
    to_view = models.CharField(max_length=8, choices=Image.View.choices)
    reason = models.TextField()
    by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["image", "version"]
        constraints = [
            models.UniqueConstraint(fields=["image", "version"], name="refiling_version_unique"),
            models.CheckConstraint(condition=Q(version__gte=1), name="refiling_version_positive"),
            models.CheckConstraint(condition=~Q(reason=""), name="refiling_has_reason"),
        ]

    def __str__(self) -> str:
        return f"Refiling v{self.version} of image #{self.image_id}"
