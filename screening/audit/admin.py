"""The audit records in the Django admin: a window onto them, not a second way to change them.

Registered through screening/admin.py; what the admin may change goes through the services (audited).
"""

from django.contrib import admin

from screening.core.admin import ReadOnlyMixin, study_trail_link
from screening.models import (
    AuditEvent,
)


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Written by the services only. The study may be deleted: its trail is shown by id."""

    list_display = ("at", "username", "action", "study_link", "object_type", "object_id", "ip_address")
    list_filter = ("action",)
    search_fields = ("username", "object_id")
    fields = ("at", "username", "action", "study_link", "object_type", "object_id", "ip_address", "detail")
    readonly_fields = fields

    @admin.display(description="Study", ordering="study_id")
    def study_link(self, event):
        return study_trail_link(event.study_id)
