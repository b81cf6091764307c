"""The Django admin: a window onto the records, not a second way to change them.

Case records (patients, studies, images, predictions, reviews with findings, audit events)
are read-only here for everyone, superusers included: they change only through the services,
which version what they change and audit it. What the admin may still do on a study goes
through those services too: assign it, re-run inference, delete it with a reason.
"""

import re

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from screening.accounts.roles import is_admin
from screening.ai.services import promotion, training
from screening.ai.services.predictions import rerun_studies
from screening.ai.services.registry import serving_champion
from screening.audit.services import client_ip, record_event
from screening.blinding import AI_STUDY_FIELDS
from screening.core.admin import AIBlindingMixin
from screening.errors import PortalError
from screening.exchange.services import export as export_service
from screening.intake.services.studies import REASON_MAX_LENGTH, assign_studies, delete_study, move_to_site
from screening.models import (
    AuditEvent,
    CaseLock,
    DicomDestination,
    DicomExport,
    DicomPeer,
    Finding,
    Image,
    ModelVersion,
    Outcome,
    Patient,
    Prediction,
    ReadingPolicy,
    Review,
    Site,
    Study,
    TrainingRun,
)
from screening.sites.services import site_codes


class ReadOnlyMixin:
    """No add, change or delete for anyone, superusers included; whoever may view, views.

    For model admins and inlines alike (their has_*_permission signatures differ, hence *args).
    """

    def has_add_permission(self, request, *args):
        return False

    def has_change_permission(self, request, *args):
        return False

    def has_delete_permission(self, request, *args):
        return False


class SiteChoiceForm(forms.ModelForm):
    """`site` chosen among the sites an admin created (a typo would file studies under a site nobody reads)."""

    site = forms.ChoiceField(choices=())

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        codes = site_codes()
        current = getattr(self.instance, "site", None)
        if current and current not in codes:
            codes.append(current)
        self.fields["site"].choices = [(code, code) for code in codes]


def study_trail_link(study_id: int | None) -> str:
    """A link to a study's audit trail by id: it works for a deleted study too."""
    if study_id is None:
        return ""
    return format_html('<a href="{}">Study #{}</a>', reverse("study-audit", args=[study_id]), study_id)


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


@admin.register(Prediction)
class PredictionAdmin(AIBlindingMixin, ReadOnlyMixin, admin.ModelAdmin):
    ai_study_path = "image__study"
    ai_rows_only = True
    list_display = ("id", "image", "model_version", "status", "probability", "updated")
    list_filter = ("status", "model_version")


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


class RegistryActionsMixin:
    """Admin actions and buttons on the model registry: each calls a service, which audits it.

    Allowed to the admin role only (`permissions=["registry"]`); buttons post to the
    extra URLs below, which check the same.
    """

    def has_registry_permission(self, request, obj=None):
        return is_admin(request.user)

    def _registry_url(self, name: str, view, route: str):
        return path(route, self.admin_site.admin_view(require_POST(view)), name=f"screening_{name}")

    def _run_service(self, request, action) -> None:
        """Call the service; its error becomes a message on the page (never a 500)."""
        if not is_admin(request.user):
            raise PermissionDenied
        try:
            text = action()
        except PortalError as exc:
            self.message_user(request, exc.message, messages.ERROR)
        else:
            self.message_user(request, text)


@admin.register(ModelVersion)
class ModelVersionAdmin(RegistryActionsMixin, ReadOnlyMixin, admin.ModelAdmin):
    """The registry, read-only. Promotion, rollback, the operating point and re-prediction are
    promotion's (audited): from the actions, the buttons here and the registry page."""

    list_display = ("name", "status", "servable", "load_error", "threshold", "created", "promoted_at")
    list_filter = ("status", "servable")
    fields = (
        "name",
        "status",
        "servable",
        "load_error",
        "threshold",
        "checkpoint",
        "note",
        "metrics",
        "created",
        "promoted_at",
    )
    readonly_fields = fields
    actions = ["promote_selected", "repredict_unread"]
    change_list_template = "admin/screening/modelversion/change_list.html"
    change_form_template = "admin/screening/modelversion/change_form.html"

    def get_urls(self):
        return [
            self._registry_url("modelversion_rollback", self.rollback_view, "rollback/"),
            self._registry_url("modelversion_operating_point", self.operating_point_view, "<int:pk>/operating-point/"),
            *super().get_urls(),
        ]

    def _one(self, request, queryset) -> ModelVersion | None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one model version.", messages.WARNING)
            return None
        return queryset.get()

    @admin.action(description="Promote the selected version to champion", permissions=["registry"])
    def promote_selected(self, request, queryset):
        version = self._one(request, queryset)
        if version is not None:

            def run():
                promotion.promote(version=version, user=request.user, ip_address=client_ip(request))
                return f"{version.name} is now the champion; workers load it with their next image."

            self._run_service(request, run)

    @admin.action(description="Re-predict every unread study with the selected version", permissions=["registry"])
    def repredict_unread(self, request, queryset):
        version = self._one(request, queryset)
        if version is not None:

            def run():
                queued = promotion.repredict(version=version, user=request.user, ip_address=client_ip(request))
                return f"Queued {queued} predictions by {version.name}; earlier predictions keep their versions."

            self._run_service(request, run)

    def rollback_view(self, request):
        def run():
            version = promotion.rollback(user=request.user, ip_address=client_ip(request))
            return f"Rolled back: {version.name} is the champion again."

        self._run_service(request, run)
        return HttpResponseRedirect(reverse("admin:screening_modelversion_changelist"))

    def operating_point_view(self, request, pk: int):
        version = get_object_or_404(ModelVersion, pk=pk)

        def run():
            moved = promotion.set_operating_point(
                version=version,
                threshold=request.POST.get("threshold"),
                user=request.user,
                ip_address=client_ip(request),
            )
            return f"Operating point of {moved.name} set to {moved.threshold:.3f}."

        self._run_service(request, run)
        return HttpResponseRedirect(reverse("admin:screening_modelversion_change", args=[version.pk]))

    def render_change_form(self, request, context, *args, **kwargs):
        context["can_use_registry"] = self.has_registry_permission(request)
        return super().render_change_form(request, context, *args, **kwargs)

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "can_use_registry": self.has_registry_permission(request)}
        return super().changelist_view(request, extra_context)


@admin.register(TrainingRun)
class TrainingRunAdmin(RegistryActionsMixin, ReadOnlyMixin, admin.ModelAdmin):
    """Runs, read-only. A new run starts through training.trigger_run (audited): the button here."""

    list_display = ("id", "status", "triggered_by", "candidate", "created", "finished", "error")
    list_filter = ("status",)
    change_list_template = "admin/screening/trainingrun/change_list.html"

    def get_urls(self):
        return [self._registry_url("trainingrun_start", self.start_view, "start/"), *super().get_urls()]

    def start_view(self, request):
        def run():
            started = training.trigger_run(trigger="admin", user=request.user, ip_address=client_ip(request))
            return training.started_message(started)

        self._run_service(request, run)
        return HttpResponseRedirect(reverse("admin:screening_trainingrun_changelist"))

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "can_use_registry": self.has_registry_permission(request)}
        return super().changelist_view(request, extra_context)


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


@admin.register(DicomPeer)
class DicomPeerAdmin(admin.ModelAdmin):
    """The DICOM receiver's allow-list (besides PORTAL_DICOM_ALLOWED_AES); every change is audited."""

    list_display = ("ae_title", "host", "site", "query_user", "enabled")
    list_filter = ("enabled", "site")
    search_fields = ("ae_title", "host")
    raw_id_fields = ("query_user",)
    form = SiteChoiceForm

    def _audit(self, request, action: str, peer: DicomPeer) -> None:
        record_event(
            action=action,
            user=request.user,
            obj=peer,
            ip_address=client_ip(request),
            detail={
                "ae_title": peer.ae_title,
                "host": peer.host,
                "enabled": peer.enabled,
                "site": peer.site,
                "query_user": peer.query_user.get_username() if peer.query_user else "",
            },
        )

    def save_model(self, request, obj, form, change):
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            self._audit(request, "dicom_peer_change" if change else "dicom_peer_add", obj)

    def delete_model(self, request, obj):
        with transaction.atomic():
            self._audit(request, "dicom_peer_delete", obj)
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            for peer in queryset:
                self.delete_model(request, peer)


@admin.register(DicomDestination)
class DicomDestinationAdmin(admin.ModelAdmin):
    """Where the SRs go (besides PORTAL_DICOM_DESTINATIONS); every change is audited."""

    list_display = ("ae_title", "host", "port", "enabled")
    list_filter = ("enabled",)
    search_fields = ("ae_title", "host")

    def _audit(self, request, action: str, destination: DicomDestination) -> None:
        record_event(
            action=action,
            user=request.user,
            obj=destination,
            ip_address=client_ip(request),
            detail={"destination": str(destination), "enabled": destination.enabled},
        )

    def save_model(self, request, obj, form, change):
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            self._audit(request, "dicom_destination_change" if change else "dicom_destination_add", obj)

    def delete_model(self, request, obj):
        with transaction.atomic():
            self._audit(request, "dicom_destination_delete", obj)
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            for destination in queryset:
                self.delete_model(request, destination)


@admin.register(DicomExport)
class DicomExportAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """SRs sent back to the PACS: read-only, with "Send again" for failed ones (audited)."""

    list_display = ("id", "study_link", "kind", "destination", "status", "attempts", "error", "updated")
    list_filter = ("status", "kind")
    list_select_related = ("study",)
    ordering = ("-created", "-id")
    actions = ["send_again"]

    @admin.display(description="Study", ordering="study_id")
    def study_link(self, export):
        return study_trail_link(export.study_id)

    def has_send_again_permission(self, request, obj=None):
        return is_admin(request.user)

    @admin.action(description="Send again (failed or pending only)", permissions=["send_again"])
    def send_again(self, request, queryset):
        queued = export_service.send_again(
            queryset.select_related("study"), user=request.user, ip_address=client_ip(request)
        )
        self.message_user(request, f"Queued {queued} exports again; exports already sent are not resent.")


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


from screening.accounts import admin as admin_accounts  # noqa: E402, F401 - accounts and API tokens: superusers only
