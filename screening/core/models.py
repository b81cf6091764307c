"""Building blocks every sub-domain's models share: append-only records and the portal roles.

Part of the single `screening` app (tables, label and migrations unchanged): see `screening.models`.
"""

from __future__ import annotations

from django.db import models


class AppendOnlyError(Exception):
    """Raised on any attempt to change or delete a record that is append-only (decisions, audit)."""


class AppendOnlyQuerySet(models.QuerySet):
    """No bulk update or delete. Deleting a study still removes its reviews: Django's cascade
    deletes in SQL without going through QuerySet.delete()."""

    def update(self, **kwargs):
        raise AppendOnlyError(f"{self.model._meta.verbose_name_plural} are append-only: add a new version instead")

    def delete(self):
        raise AppendOnlyError(f"{self.model._meta.verbose_name_plural} are append-only and cannot be deleted")


class AppendOnlyModel(models.Model):
    """A medical record: written once, never changed. The database refuses updates too (migration 0007)."""

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError(f"{self._meta.verbose_name} #{self.pk} is append-only: add a new version instead")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError(f"{self._meta.verbose_name} #{self.pk} is append-only and cannot be deleted")


class Role(models.TextChoices):
    """Portal roles, stored as Django groups so admins manage them in the admin."""

    RADIOLOGIST = "radiologist", "Radiologist"
    ARBITRATOR = "arbitrator", "Arbitrator"
    ADMIN = "admin", "Admin"
    API_CLIENT = "api_client", "API client"
