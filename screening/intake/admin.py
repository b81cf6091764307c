"""The intake records in the Django admin: a window onto them, not a second way to change them.

Registered through screening/admin.py; what the admin may change goes through the services (audited).
"""

import re

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from screening.accounts.roles import is_admin
from screening.ai.services.predictions import rerun_studies
from screening.ai.services.registry import serving_champion
from screening.audit.services import client_ip
from screening.blinding import AI_STUDY_FIELDS
from screening.core.admin import AIBlindingMixin, ReadOnlyMixin, SiteChoiceForm, study_trail_link
from screening.errors import PortalError
from screening.intake.services.studies import REASON_MAX_LENGTH, assign_studies, delete_study, move_to_site
from screening.models import (
    Image,
    Patient,
    Study,
)


@admin.register(Patient)
class PatientAdmin(ReadOnlyMixin, admin.ModelAdmin):
    # No search here: the admin's search goes in the query string, and so into access logs.
    list_display = ("id", "patient_id", "sex", "birth_date", "created")
    list_filter = ("sex",)


class ImageInline(ReadOnlyMixin, admin.TabularInline):
    model = Image
    extra = 0
    fields = ("laterality", "view", "file_format", "rows", "columns", "status")
    readonly_fields = fields
    show_change_link = True


class StudyDeleteForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        max_length=REASON_MAX_LENGTH,
        required=False,  # the service says why an empty reason is refused
        help_text="Kept in the audit trail, which stays readable after the deletion. No patient identifiers.",
    )


@admin.register(Study)
class StudyAdmin(AIBlindingMixin, admin.ModelAdmin):
    """Studies come from ingest; here an admin may assign, re-run and delete (with a reason), nothing else."""

    list_display = (
        "id",
        "patient",
        "study_date",
        "site",
        "status",
        "exam_score",
        "exam_flag",
        "assigned_to",
        "created",
    )
    list_filter = ("status", "exam_flag", "site", "study_date")
    search_fields = ("study_uid",)  # never a patient identifier: a search lands in the query string
    raw_id_fields = ("assigned_to",)
    inlines = [ImageInline]
    actions = ["rerun_inference", "assign_to_me", "unassign", "delete_with_reason"]
    fields = (
        "study_uid",
        "uid_generated",
        "accession_number",
        "study_date",
        "patient",
        "status",
        "exam_score",
        "exam_flag",
        "score_left",
        "score_right",
        "exam_model",
        "site",
        "assigned_to",
        "created",
        "updated",
        "audit_trail",
    )
    readonly_fields = tuple(f for f in fields if f not in ("assigned_to", "site"))
    form = SiteChoiceForm
    ai_fields = AI_STUDY_FIELDS

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # the stock delete asks no reason and leaves the files: see delete_with_reason

    def has_study_delete_permission(self, request, obj=None):
        return is_admin(request.user)

    @admin.display(description="Audit trail")
    def audit_trail(self, study):
        return study_trail_link(study.pk)

    def save_model(self, request, obj, form, change):
        if "site" in form.changed_data:
            move_to_site(study=obj, site=form.cleaned_data["site"], user=request.user, ip_address=client_ip(request))
        if "assigned_to" in form.changed_data:
            assign_studies(studies=[obj], assignee=obj.assigned_to, user=request.user, ip_address=client_ip(request))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "can_delete_with_reason": self.has_study_delete_permission(request)}
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.action(description="Assign to me")
    def assign_to_me(self, request, queryset):
        changed = assign_studies(
            studies=queryset, assignee=request.user, user=request.user, ip_address=client_ip(request)
        )
        self.message_user(request, f"Assigned {changed} studies to you.")

    @admin.action(description="Unassign")
    def unassign(self, request, queryset):
        changed = assign_studies(studies=queryset, assignee=None, user=request.user, ip_address=client_ip(request))
        self.message_user(request, f"Unassigned {changed} studies.")

    @admin.action(description="Re-run inference with the champion model")
    def rerun_inference(self, request, queryset):
        try:
            serving_champion()
        except PortalError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return
        queued = rerun_studies(queryset, user=request.user, ip_address=client_ip(request))
        self.message_user(request, f"Queued {len(queued)} predictions; earlier predictions keep their model versions.")

    @admin.action(description="Delete selected studies (asks for a reason)", permissions=["study_delete"])
    def delete_with_reason(self, request, queryset):
        ids = ",".join(str(pk) for pk in queryset.order_by("pk").values_list("pk", flat=True))
        return HttpResponseRedirect(f"{reverse('admin:screening_study_delete_with_reason')}?ids={ids}")

    def get_urls(self):
        delete = path(
            "delete-with-reason/",
            self.admin_site.admin_view(self.delete_with_reason_view),
            name="screening_study_delete_with_reason",
        )
        return [delete, *super().get_urls()]

    def delete_with_reason_view(self, request):
        """Delete studies for a stated reason through studies.delete_study (all or none)."""
        if not self.has_study_delete_permission(request):
            raise PermissionDenied
        ids = [int(n) for n in re.findall(r"\d+", request.POST.get("ids") or request.GET.get("ids", ""))]
        studies = list(
            Study.objects.filter(pk__in=ids)
            .annotate(n_images=Count("images", distinct=True), n_reviews=Count("reviews", distinct=True))
            .order_by("pk")
        )
        changelist = reverse("admin:screening_study_changelist")
        if not studies:
            self.message_user(request, "Select the studies to delete first.", messages.WARNING)
            return HttpResponseRedirect(changelist)
        form = StudyDeleteForm(request.POST if request.method == "POST" else None)
        if form.is_valid():
            try:
                with transaction.atomic():
                    for study in studies:
                        delete_study(
                            study=study,
                            user=request.user,
                            reason=form.cleaned_data["reason"],
                            ip_address=client_ip(request),
                        )
            except PortalError as exc:
                form.add_error("reason" if exc.field == "reason" else None, exc.message)
            else:
                self.message_user(request, f"Deleted {len(studies)} studies; their audit trails stay readable.")
                return HttpResponseRedirect(changelist)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Delete studies",
            "studies": studies,
            "ids": ",".join(str(s.pk) for s in studies),
            "form": form,
        }
        return TemplateResponse(request, "admin/screening/study/delete_with_reason.html", context)


@admin.register(Image)
class ImageAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("id", "study", "laterality", "view", "file_format", "status", "manufacturer", "created")
    list_filter = ("status", "laterality", "view", "file_format", "photometric")
    search_fields = ("sop_uid", "sha256", "study__study_uid")
