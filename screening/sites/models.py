"""Screening units: each reads its studies under its own reading policy.

Part of the single `screening` app (tables, label and migrations unchanged): see `screening.models`.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

DEFAULT_SITE = "default"


class Site(models.Model):
    """A screening unit. Its studies are read under its own reading policy; its modalities are DICOM peers of it.

    Studies, peers and policies name their site by code (text, not a foreign key: the default site
    needs no row, and records keep the code they were made under).
    """

    code = models.SlugField(
        max_length=64, unique=True, help_text="Short name used by uploads (`site=`) and the API; never changes."
    )
    name = models.CharField(max_length=200)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]
        constraints = [models.CheckConstraint(condition=~Q(code=""), name="site_code_not_empty")]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"
