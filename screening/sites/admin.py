"""The sites records in the Django admin: a window onto them, not a second way to change them.

Registered through screening/admin.py; what the admin may change goes through the services (audited).
"""

from django.contrib import admin

from screening.core.admin import WritesThroughServiceMixin
from screening.models import (
    Site,
)
from screening.sites import services


@admin.register(Site)
class SiteAdmin(WritesThroughServiceMixin, admin.ModelAdmin):
    """Screening units. Created and renamed here (audited); never deleted, and a code never changes, because
    studies, peers and policy versions keep the code they were filed under. Policies are set per site on the
    reading policy page."""

    list_display = ("code", "name", "created")
    search_fields = ("code",)
    save_service = services.save_site

    def get_readonly_fields(self, request, obj=None):
        return ("code", "created") if obj is not None else ("created",)

    def has_delete_permission(self, request, obj=None):
        return False
