"""The reading records in the Django admin: a window onto them, not a second way to change them.

Registered through screening/admin.py; what the admin may change goes through the services (audited).
"""

from django.contrib import admin

from screening.core.admin import AIBlindingMixin, ReadOnlyMixin, WritesThroughServiceMixin, study_trail_link
from screening.models import (
    CaseLock,
    Finding,
    NoteTemplate,
    Outcome,
    ReadingPolicy,
    Review,
)
from screening.reading.services import notes


class FindingInline(ReadOnlyMixin, admin.TabularInline):
    model = Finding
    extra = 0
    fields = ("image", "laterality", "type", "x", "y", "width", "height")
    readonly_fields = fields


@admin.register(Review)
class ReviewAdmin(AIBlindingMixin, ReadOnlyMixin, admin.ModelAdmin):
    """Decisions: a correction is a new version made by the radiologist, never an edit here."""

    ai_fields = ("agrees_with_ai",)

    list_display = ("id", "study", "version", "radiologist", "decision", "birads", "density", "created")
    list_filter = ("decision", "birads", "density")
    inlines = [FindingInline]


@admin.register(ReadingPolicy)
class ReadingPolicyAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Policy versions: set on the reading policy page (audited, with its expected workload), never edited."""

    list_display = (
        "id",
        "site",
        "mode",
        "triage_threshold",
        "resolution",
        "blind_ai",
        "order",
        "created_by",
        "created",
    )
    list_filter = ("site", "mode")


@admin.register(CaseLock)
class CaseLockAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Who is reading which case now; locks come and go with the readers (audited)."""

    list_display = ("study", "user", "acquired", "expires")


@admin.register(Outcome)
class OutcomeAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Outcomes per breast: recorded on the outcomes page or through the API (audited), never edited."""

    list_display = ("id", "study_link", "laterality", "result", "cancer_type", "diagnosed_on", "source", "created")
    list_filter = ("result", "source")

    @admin.display(description="Study", ordering="study_id")
    def study_link(self, outcome):
        return study_trail_link(outcome.study_id)


@admin.register(NoteTemplate)
class NoteTemplateAdmin(WritesThroughServiceMixin, admin.ModelAdmin):
    """Note templates: added, edited and retired by admins (audited, screening.reading.services.notes); never
    deleted."""

    list_display = ("name", "active", "created")
    list_filter = ("active",)  # no search: a search goes into the query string (test_admin keeps it to none here)
    save_service = notes.save_note_template

    def has_delete_permission(self, request, obj=None):
        return False
