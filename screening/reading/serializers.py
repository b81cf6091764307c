"""Reads and findings as the API shows them, and the input of a read."""

from __future__ import annotations

from rest_framework import serializers

from screening.models import Finding, ReportedFinding, Review
from screening.reading import lexicon
from screening.reading.assessment import SIDE_NAMES, breasts_of


class FindingSerializer(serializers.ModelSerializer):
    image = serializers.PrimaryKeyRelatedField(read_only=True)

    class Meta:
        model = Finding
        fields = ["id", "image", "laterality", "type", "x", "y", "width", "height"]
        read_only_fields = fields


class ReportedFindingSerializer(serializers.ModelSerializer):
    marks = serializers.SerializerMethodField(help_text="The ids of the marks (findings) that show it.")
    text = serializers.SerializerMethodField(help_text="The finding in plain lexicon words.")

    class Meta:
        model = ReportedFinding
        fields = ["number", "laterality", "type", "descriptors", "clock", "quadrant", "depth", "distance_cm"]
        fields += ["marks", "text"]
        read_only_fields = fields

    def get_marks(self, finding) -> list[int]:
        return [mark.pk for mark in finding.marks.all()]

    def get_text(self, finding) -> str:
        return lexicon.describe(finding)


class ReviewSerializer(serializers.ModelSerializer):
    radiologist = serializers.CharField(source="radiologist.get_username", read_only=True)
    findings = FindingSerializer(many=True, read_only=True)
    reported_findings = ReportedFindingSerializer(many=True, read_only=True)

    class Meta:
        model = Review
        fields = [
            "id",
            "version",
            "radiologist",
            "decision",
            "birads",
            "breasts",
            "density",
            "note",
            "agrees_with_ai",
            "created",
            "findings",
            "reported_findings",
        ]
        read_only_fields = fields

    breasts = serializers.SerializerMethodField(
        help_text="Each breast's call, {right: {decision, birads, mapped}, left: ...}; mapped is true for a read "
        "made before per-breast assessment, whose exam-level decision is mapped onto the breasts."
    )

    def get_breasts(self, review) -> dict:
        return {SIDE_NAMES[side]: call.as_dict() for side, call in breasts_of(review).items()}


class FindingInputSerializer(serializers.Serializer):
    image = serializers.IntegerField(help_text="Image id (must belong to the study).")
    type = serializers.ChoiceField(choices=Finding.Type.choices)
    x = serializers.FloatField(min_value=0, help_text="Left, original image pixels.")
    y = serializers.FloatField(min_value=0, help_text="Top, original image pixels.")
    width = serializers.FloatField(min_value=0, default=0, help_text="0 for a point.")
    height = serializers.FloatField(min_value=0, default=0, help_text="0 for a point.")


class BreastInputSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=Review.Decision.choices, help_text="abnormal: recall this breast.")
    birads = serializers.IntegerField(min_value=0, max_value=6)


class ReportedFindingInputSerializer(serializers.Serializer):
    """Checked against the lexicon by the service (screening.lexicon), which names what is wrong."""

    type = serializers.CharField(help_text="mass, calcifications, asymmetry, distortion or associated.")
    marks = serializers.ListField(
        child=serializers.IntegerField(), default=list, help_text="Indexes into `findings` (the marks) that show it."
    )
    descriptors = serializers.DictField(
        child=serializers.CharField(), default=dict, help_text="e.g. {shape: irregular, margin: spiculated}."
    )
    laterality = serializers.CharField(required=False, allow_blank=True, default="", help_text="R or L.")
    clock = serializers.IntegerField(required=False, allow_null=True, default=None)
    quadrant = serializers.CharField(required=False, allow_blank=True, default="")
    depth = serializers.CharField(required=False, allow_blank=True, default="")
    distance_cm = serializers.FloatField(required=False, allow_null=True, default=None)


class ReviewInputSerializer(serializers.Serializer):
    right = BreastInputSerializer(required=False, help_text="The right breast's call (give both breasts or neither).")
    left = BreastInputSerializer(required=False, help_text="The left breast's call.")
    decision = serializers.ChoiceField(
        choices=Review.Decision.choices,
        required=False,
        help_text="The exam's decision: follows from the breasts when they are given; alone (older clients), it is "
        "mapped onto the breasts (abnormal: the breasts its findings mark, else both).",
    )
    birads = serializers.IntegerField(min_value=0, max_value=6, required=False)
    density = serializers.ChoiceField(choices=[("", "not given"), *Review.Density.choices], required=False, default="")
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)
    findings = FindingInputSerializer(
        many=True,
        required=False,
        help_text="The marks. Left out with reported_findings: none for a new read, and a correction keeps the "
        "marks and reported findings of the read it corrects. A list (even empty) is the marks of this version.",
    )
    reported_findings = ReportedFindingInputSerializer(
        many=True, required=False, help_text="The findings in ACR BI-RADS lexicon terms, each naming its marks."
    )
