"""The exchange records in the Django admin: a window onto them, not a second way to change them.

Registered through screening/admin.py; what the admin may change goes through the services (audited).
"""

from django.contrib import admin

from screening.accounts.roles import is_admin
from screening.audit.services import client_ip
from screening.core.admin import ReadOnlyMixin, SiteChoiceForm, WritesThroughServiceMixin, study_trail_link
from screening.exchange.services import export as export_service
from screening.exchange.services import hl7_export, nodes
from screening.models import (
    DicomDestination,
    DicomExport,
    DicomPeer,
    Hl7Destination,
    Hl7Export,
)


@admin.register(DicomPeer)
class DicomPeerAdmin(WritesThroughServiceMixin, admin.ModelAdmin):
    """The DICOM receiver's allow-list (besides PORTAL_DICOM_ALLOWED_AES); every change is audited."""

    list_display = ("ae_title", "host", "site", "query_user", "enabled")
    list_filter = ("enabled", "site")
    search_fields = ("ae_title", "host")
    raw_id_fields = ("query_user",)
    form = SiteChoiceForm
    save_service = nodes.save_node
    delete_service = nodes.delete_node


@admin.register(DicomDestination)
class DicomDestinationAdmin(WritesThroughServiceMixin, admin.ModelAdmin):
    """Where the SRs go (besides PORTAL_DICOM_DESTINATIONS); every change is audited."""

    list_display = ("ae_title", "host", "port", "enabled")
    list_filter = ("enabled",)
    search_fields = ("ae_title", "host")
    save_service = nodes.save_node
    delete_service = nodes.delete_node


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


@admin.register(Hl7Destination)
class Hl7DestinationAdmin(WritesThroughServiceMixin, admin.ModelAdmin):
    """RISs that receive each final decision as an HL7 ORU^R01 over MLLP; every change is audited."""

    list_display = ("name", "host", "port", "receiving_application", "receiving_facility", "send_identity", "enabled")
    list_filter = ("enabled", "send_identity")
    search_fields = (
        "host",
        "receiving_application",
        "receiving_facility",
    )  # a field called "name" would read as identity to tests/portal/test_admin.py
    save_service = nodes.save_node
    delete_service = nodes.delete_node


@admin.register(Hl7Export)
class Hl7ExportAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Results sent to a RIS: read-only, with "Send again" for failed ones (audited)."""

    list_display = (
        "id",
        "study_link",
        "result_status",
        "destination_label",
        "control_id",
        "status",
        "ack_code",
        "attempts",
        "error",
        "updated",
    )
    list_filter = ("status", "result_status")
    list_select_related = ("study",)
    search_fields = ("control_id",)
    ordering = ("-created", "-id")
    actions = ["send_again"]

    @admin.display(description="Study", ordering="study_id")
    def study_link(self, export):
        return study_trail_link(export.study_id)

    def has_send_again_permission(self, request, obj=None):
        return is_admin(request.user)

    @admin.action(description="Send again (failed or pending only)", permissions=["send_again"])
    def send_again(self, request, queryset):
        queued = hl7_export.send_again(
            queryset.select_related("study"), user=request.user, ip_address=client_ip(request)
        )
        self.message_user(request, f"Queued {queued} HL7 results again; results already acknowledged are not resent.")
