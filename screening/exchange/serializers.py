"""SR exports and HL7 results as the API shows them."""

from __future__ import annotations

from rest_framework import serializers

from screening.models import DicomExport, Hl7Export


class DicomExportSerializer(serializers.ModelSerializer):
    """One SR (AI result or decision) sent to one DICOM destination, and how that went."""

    class Meta:
        model = DicomExport
        fields = ["id", "kind", "review", "destination", "status", "attempts", "error", "sop_instance_uid", "updated"]
        read_only_fields = fields


class Hl7ExportSerializer(serializers.ModelSerializer):
    """One final decision sent to one RIS as an HL7 ORU^R01, and whether the RIS took it (`status` sent, with
    its `ack_code` AA or CA) or not (pending with the last attempt's reason, or failed, with its AE/AR)."""

    review_version = serializers.IntegerField(
        source="review.version", read_only=True, help_text="The version of the decision the message carries."
    )
    destination = serializers.CharField(
        source="destination_label", read_only=True, help_text="The HL7 destination as it was when queued."
    )
    control_id = serializers.CharField(read_only=True, help_text="MSH-10, the same on every attempt.")
    result_status = serializers.ChoiceField(
        choices=Hl7Export.ResultStatus.choices,
        read_only=True,
        help_text="OBR-25: F, the case's first final decision; C, a corrected result.",
    )
    ack_code = serializers.CharField(read_only=True, help_text="MSA-1 of the RIS's last answer (empty: none).")
    created = serializers.DateTimeField(read_only=True, help_text="When it was queued.")
    updated = serializers.DateTimeField(
        read_only=True, help_text="The last attempt or answer: when the RIS acknowledged it, once `status` is sent."
    )

    class Meta:
        model = Hl7Export
        fields = [
            "id",
            "review",
            "review_version",
            "destination",
            "control_id",
            "result_status",
            "status",
            "attempts",
            "ack_code",
            "error",
            "created",
            "updated",
        ]
        read_only_fields = fields
