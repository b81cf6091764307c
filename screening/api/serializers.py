from __future__ import annotations

from django.urls import reverse
from rest_framework import serializers

from ..models import Image


class ImageUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="A DICOM (MG) or a PNG, JPEG, PGM or TIFF grayscale image.")
    patient_id = serializers.CharField(
        required=False, allow_blank=True, max_length=64, help_text="Required for image files; a DICOM carries its own."
    )
    laterality = serializers.ChoiceField(choices=["L", "R"], required=False, allow_blank=True)
    view = serializers.ChoiceField(choices=["CC", "MLO", "OTHER"], required=False, allow_blank=True)
    accession_number = serializers.CharField(required=False, allow_blank=True, max_length=16)


class ImageSerializer(serializers.ModelSerializer):
    study = serializers.IntegerField(source="study_id", read_only=True)
    rendition_url = serializers.SerializerMethodField()

    class Meta:
        model = Image
        fields = [
            "id",
            "sop_uid",
            "study",
            "laterality",
            "view",
            "file_format",
            "rows",
            "columns",
            "bits_stored",
            "photometric",
            "manufacturer",
            "presentation_intent",
            "sha256",
            "size_bytes",
            "status",
            "created",
            "rendition_url",
        ]
        read_only_fields = fields

    def get_rendition_url(self, image: Image) -> str:
        return reverse("image-rendition", args=[image.pk])
