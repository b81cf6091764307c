"""The Django admin: a window onto the records, not a second way to change them.

Case records (patients, studies, images, predictions, reviews with findings, audit events)
are read-only here for everyone, superusers included: they change only through the services,
which version what they change and audit it. What the admin may still do on a study goes
through those services too: assign it, re-run inference, delete it with a reason.
"""

from django.contrib import admin
from django.db import transaction

from screening.accounts.roles import is_admin
from screening.audit.services import client_ip, record_event
from screening.core.admin import ReadOnlyMixin, SiteChoiceForm, study_trail_link
from screening.exchange.services import export as export_service
from screening.models import (
    DicomDestination,
    DicomExport,
    DicomPeer,
)


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
