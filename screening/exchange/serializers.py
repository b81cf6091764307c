"""SR exports as the API shows them."""

from __future__ import annotations

from rest_framework import serializers

from screening.models import DicomExport


class DicomExportSerializer(serializers.ModelSerializer):
    """One SR (AI result or decision) sent to one DICOM destination, and how that went."""

    class Meta:
        model = DicomExport
        fields = ["id", "kind", "review", "destination", "status", "attempts", "error", "sop_instance_uid", "updated"]
        read_only_fields = fields
