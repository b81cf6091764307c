from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from . import services
from .models import AuditEvent, Finding, Image, ModelVersion, Patient, Prediction, Review, Study, TrainingRun


@admin.register(Patient)
class PatientAdmin(admin.ModelAdmin):
    list_display = ("id", "patient_id", "sex", "birth_date", "created")
    search_fields = ("patient_id", "name")
    list_filter = ("sex",)


class ImageInline(admin.TabularInline):
    model = Image
    extra = 0
    fields = ("laterality", "view", "file_format", "rows", "columns", "status")
    readonly_fields = fields
    can_delete = False
    show_change_link = True


@admin.register(Study)
class StudyAdmin(admin.ModelAdmin):
    list_display = ("id", "patient", "study_date", "status", "exam_score", "exam_flag", "assigned_to", "created")
    list_filter = ("status", "exam_flag", "study_date")
    search_fields = ("study_uid", "accession_number", "patient__patient_id")
    raw_id_fields = ("patient", "assigned_to")
    inlines = [ImageInline]
    actions = ["rerun_inference", "assign_to_me", "unassign"]
    readonly_fields = ("audit_trail",)

    @admin.display(description="Audit trail")
    def audit_trail(self, study):
        return format_html('<a href="{}">View the audit trail</a>', reverse("study-audit", args=[study.pk]))

    @admin.action(description="Assign to me")
    def assign_to_me(self, request, queryset):
        self.message_user(request, f"Assigned {queryset.update(assigned_to=request.user)} studies to you.")

    @admin.action(description="Unassign")
    def unassign(self, request, queryset):
        self.message_user(request, f"Unassigned {queryset.update(assigned_to=None)} studies.")

    @admin.action(description="Re-run inference with the champion model")
    def rerun_inference(self, request, queryset):
        if services.champion() is None:
            self.message_user(request, "No champion model is registered.", messages.ERROR)
            return
        queued = services.rerun_studies(queryset)
        self.message_user(request, f"Queued {len(queued)} predictions; earlier predictions keep their model versions.")


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = ("id", "study", "laterality", "view", "file_format", "status", "manufacturer", "created")
    list_filter = ("status", "laterality", "view", "file_format", "photometric")
    search_fields = ("sop_uid", "sha256", "study__study_uid")
    raw_id_fields = ("study",)


@admin.register(Prediction)
class PredictionAdmin(admin.ModelAdmin):
    list_display = ("id", "image", "model_version", "status", "probability", "updated")
    list_filter = ("status", "model_version")
    raw_id_fields = ("image",)


class FindingInline(admin.TabularInline):
    model = Finding
    extra = 0
    raw_id_fields = ("image",)


@admin.register(Review)
class ReviewAdmin(admin.ModelAdmin):
    list_display = ("id", "study", "version", "radiologist", "decision", "birads", "density", "created")
    list_filter = ("decision", "birads", "density")
    raw_id_fields = ("study",)
    inlines = [FindingInline]


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("name", "status", "threshold", "created", "promoted_at")
    list_filter = ("status",)


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ("id", "status", "triggered_by", "candidate", "created", "finished")
    list_filter = ("status",)


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ("at", "username", "action", "study", "object_type", "object_id", "ip_address")
    list_filter = ("action",)
    search_fields = ("username", "object_id")
    raw_id_fields = ("study", "user")

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
