"""The ai records in the Django admin: a window onto them, not a second way to change them.

Registered through screening/admin.py; what the admin may change goes through the services (audited).
"""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from screening.accounts.roles import is_admin
from screening.ai.services import promotion, training
from screening.audit.services import client_ip
from screening.core.admin import AIBlindingMixin, ReadOnlyMixin
from screening.errors import PortalError
from screening.models import (
    ModelVersion,
    Prediction,
    TrainingRun,
)


@admin.register(Prediction)
class PredictionAdmin(AIBlindingMixin, ReadOnlyMixin, admin.ModelAdmin):
    ai_study_path = "image__study"
    ai_rows_only = True
    list_display = ("id", "image", "model_version", "status", "probability", "updated")
    list_filter = ("status", "model_version")


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
