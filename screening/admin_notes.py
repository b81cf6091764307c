"""Note templates in the admin: added, edited and retired by admins (audited); never deleted."""

from __future__ import annotations

from django.contrib import admin
from django.db import transaction

from . import services
from .models_notes import NoteTemplate
from .services.audit import record_event


@admin.register(NoteTemplate)
class NoteTemplateAdmin(admin.ModelAdmin):
    list_display = ("name", "active", "created")
    list_filter = ("active",)  # no search: a search goes into the query string (test_admin keeps it to none here)

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            record_event(
                action="note_template_change" if change else "note_template_add",
                user=request.user,
                obj=obj,
                ip_address=services.client_ip(request),
                detail={"name": obj.name, "active": obj.active},
            )
