"""Reads and findings as the API shows them, and the input of a read."""

from __future__ import annotations

from rest_framework import serializers

from screening.models import Finding, Review


class FindingSerializer(serializers.ModelSerializer):
    image = serializers.PrimaryKeyRelatedField(read_only=True)

    class Meta:
        model = Finding
        fields = ["id", "image", "laterality", "type", "x", "y", "width", "height"]
        read_only_fields = fields


class ReviewSerializer(serializers.ModelSerializer):
    radiologist = serializers.CharField(source="radiologist.get_username", read_only=True)
    findings = FindingSerializer(many=True, read_only=True)

    class Meta:
        model = Review
        fields = [
            "id",
            "version",
            "radiologist",
            "decision",
            "birads",
            "density",
            "note",
            "agrees_with_ai",
            "created",
            "findings",
        ]
        read_only_fields = fields


class FindingInputSerializer(serializers.Serializer):
    image = serializers.IntegerField(help_text="Image id (must belong to the study).")
    type = serializers.ChoiceField(choices=Finding.Type.choices)
    x = serializers.FloatField(min_value=0, help_text="Left, original image pixels.")
    y = serializers.FloatField(min_value=0, help_text="Top, original image pixels.")
    width = serializers.FloatField(min_value=0, default=0, help_text="0 for a point.")
    height = serializers.FloatField(min_value=0, default=0, help_text="0 for a point.")


class ReviewInputSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=Review.Decision.choices)
    birads = serializers.IntegerField(min_value=0, max_value=6)
    density = serializers.ChoiceField(choices=[("", "not given"), *Review.Density.choices], required=False, default="")
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)
    findings = FindingInputSerializer(
        many=True,
        required=False,
        help_text="Left out: none for a new read, and a correction keeps the findings of the read it corrects. "
        "A list (even empty) is the findings of this version.",
    )
