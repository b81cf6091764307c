"""Findings described with the ACR BI-RADS lexicon (issue 24), registered as part of the screening app.

A reported finding belongs to one read: what the reader describes once (type, descriptors, location);
its marks (screening.models.Finding, a box or point on one image) show it on one view or on both.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from .lexicon import DEPTHS, MAX_DISTANCE_CM, QUADRANTS, TYPES
from .models import AppendOnlyModel, Review


class ReportedFinding(AppendOnlyModel):
    review = models.ForeignKey(Review, on_delete=models.CASCADE, related_name="reported_findings")
    number = models.PositiveSmallIntegerField(help_text="1, 2, ... within its read, as the report numbers them.")
    laterality = models.CharField(max_length=1, choices=[("R", "Right"), ("L", "Left")])
    type = models.CharField(max_length=16, choices=list(TYPES.items()))
    descriptors = models.JSONField(default=dict, blank=True, help_text="Lexicon descriptors: {name: value}.")
    clock = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Clock-face position, 1 to 12.")
    quadrant = models.CharField(max_length=16, choices=list(QUADRANTS.items()), blank=True)
    depth = models.CharField(max_length=10, choices=list(DEPTHS.items()), blank=True)
    distance_cm = models.FloatField("distance from the nipple (cm)", null=True, blank=True)

    class Meta:
        ordering = ["review", "number"]
        constraints = [
            models.UniqueConstraint(fields=["review", "number"], name="reported_finding_number_unique"),
            models.CheckConstraint(condition=Q(laterality__in=["R", "L"]), name="reported_finding_laterality_valid"),
            models.CheckConstraint(condition=Q(type__in=list(TYPES)), name="reported_finding_type_valid"),
            models.CheckConstraint(
                condition=Q(clock__isnull=True) | Q(clock__gte=1, clock__lte=12), name="reported_finding_clock_1_12"
            ),
            models.CheckConstraint(condition=Q(quadrant__in=["", *QUADRANTS]), name="reported_finding_quadrant_valid"),
            models.CheckConstraint(condition=Q(depth__in=["", *DEPTHS]), name="reported_finding_depth_valid"),
            models.CheckConstraint(
                condition=Q(distance_cm__isnull=True) | Q(distance_cm__gte=0, distance_cm__lte=MAX_DISTANCE_CM),
                name="reported_finding_distance_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"Finding {self.number} of review #{self.review_id}"
