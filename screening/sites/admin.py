"""The Django admin: a window onto the records, not a second way to change them.

Case records (patients, studies, images, predictions, reviews with findings, audit events)
are read-only here for everyone, superusers included: they change only through the services,
which version what they change and audit it. What the admin may still do on a study goes
through those services too: assign it, re-run inference, delete it with a reason.
"""

from django.contrib import admin
from django.db import transaction

from screening.audit.services import client_ip, record_event
from screening.models import (
    Site,
)


@admin.register(Site)
class SiteAdmin(admin.ModelAdmin):
    """Screening units. Created and renamed here (audited); never deleted, and a code never changes, because
    studies, peers and policy versions keep the code they were filed under. Policies are set per site on the
    reading policy page."""

    list_display = ("code", "name", "created")
    search_fields = ("code",)

    def get_readonly_fields(self, request, obj=None):
        return ("code", "created") if obj is not None else ("created",)

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            record_event(
                action="site_change" if change else "site_add",
                user=request.user,
                obj=obj,
                ip_address=client_ip(request),
                detail={"code": obj.code, "name": obj.name},
            )
