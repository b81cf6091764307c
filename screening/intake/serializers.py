from __future__ import annotations

from functools import cache, cached_property

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ml.scoring import thresholds_for
from screening.accounts.roles import can_see_identity
from screening.blinding import AIVisibility, ai_visibility
from screening.intake.selectors import current_prediction, pseudonym
from screening.intake.services.renditions import FAILED, PENDING, READY, rendition_state
from screening.models import DicomExport, Finding, Image, Patient, Prediction, Review, Study


class ImageUploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="A DICOM (MG) or a PNG, JPEG, PGM or TIFF grayscale image.")
    patient_id = serializers.CharField(
        required=False, allow_blank=True, max_length=64, help_text="Required for image files; a DICOM carries its own."
    )
    laterality = serializers.ChoiceField(choices=["L", "R"], required=False, allow_blank=True)
    view = serializers.ChoiceField(choices=["CC", "MLO", "OTHER"], required=False, allow_blank=True)
    accession_number = serializers.CharField(required=False, allow_blank=True, max_length=16)
    site = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=64,
        help_text="Site code of a new study (default: the default site); also `?site=` for a DICOM body.",
    )


@cache
def _url_pattern(name: str) -> str:
    """A URL with one id, as a format string: reversed once, not once per row of a 50-row page."""
    return reverse(name, args=[0]).replace("/0/", "/{}/")


def url_with_id(name: str, pk: int) -> str:
    return _url_pattern(name).format(int(pk))


def thresholds_of(version, kind: str) -> dict[str, float] | None:
    """The image, breast and region thresholds a version applies to a source kind (ml.scoring)."""
    return None if version is None else thresholds_for(version.metrics, version.threshold, kind)


class PredictionSerializer(serializers.ModelSerializer):
    model_version = serializers.CharField(source="model_version.name")
    above_threshold = serializers.SerializerMethodField(
        help_text="The image-level flag: this image's probability at or above its model's image threshold."
    )
    threshold = serializers.SerializerMethodField(help_text="The image-level threshold the flag was set at.")
    flag_level = serializers.SerializerMethodField(help_text="Always 'image': the level this flag belongs to.")
    heatmap_url = serializers.SerializerMethodField()

    class Meta:
        model = Prediction
        fields = [
            "id",
            "status",
            "probability",
            "above_threshold",
            "threshold",
            "flag_level",
            "source_kind",
            "logit",
            "regions",
            "model_version",
            "error",
            "attempts",
            "preprocess_ms",
            "inference_ms",
            "heatmap_url",
            "created",
            "updated",
        ]
        read_only_fields = fields

    def get_above_threshold(self, prediction: Prediction) -> bool | None:
        if prediction.probability is None:
            return None
        return prediction.probability >= self.get_threshold(prediction)

    def get_threshold(self, prediction: Prediction) -> float:
        return thresholds_of(prediction.model_version, prediction.source_kind)["image"]

    def get_flag_level(self, prediction: Prediction) -> str:
        return "image"

    def get_heatmap_url(self, prediction: Prediction) -> str | None:
        return url_with_id("api-prediction-heatmap", prediction.pk) if prediction.heatmap else None


class ImageSerializer(serializers.ModelSerializer):
    study = serializers.IntegerField(source="study_id", read_only=True)
    rendition_url = serializers.SerializerMethodField()
    full_url = serializers.SerializerMethodField()
    rendition_status = serializers.SerializerMethodField(
        help_text="pending: the render worker has not made the PNGs yet (rendition_url answers a grey placeholder "
        "with 202); ready; failed: the pixel data cannot be decoded (`error` says why)."
    )
    prediction = serializers.SerializerMethodField(help_text="The prediction by the newest model version.")

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
            "error",
            "created",
            "rendition_url",
            "rendition_status",
            "full_url",
            "prediction",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ChoiceField(choices=[PENDING, READY, FAILED]))
    def get_rendition_status(self, image: Image) -> str:
        return rendition_state(image)

    def get_rendition_url(self, image: Image) -> str:
        return url_with_id("api-image-rendition", image.pk)

    def get_full_url(self, image: Image) -> str:
        return url_with_id("api-image-full", image.pk)

    @extend_schema_field(PredictionSerializer(allow_null=True))
    def get_prediction(self, image: Image) -> dict | None:
        if not visibility_of(self).shows(image):  # the queryset's prefetch left it out too (screening.blinding)
            return None
        prediction = current_prediction(image)
        return self._prediction_serializer.to_representation(prediction) if prediction else None

    @cached_property
    def _prediction_serializer(self) -> PredictionSerializer:
        """One for every row of a list: a serializer builds its fields (deep copies) once per instance, and
        building them for each of 50 images was most of an image list's time."""
        return PredictionSerializer()


def _viewer(serializer: serializers.Serializer):
    request = serializer.context.get("request")
    return request.user if request is not None else None


def visibility_of(serializer: serializers.Serializer) -> AIVisibility:
    """The viewer's blinding to the AI, computed once per response (kept in the shared context)."""
    found = serializer.context.get("ai_visibility")
    if found is None:
        found = ai_visibility(_viewer(serializer))
        if isinstance(serializer.context, dict):
            serializer.context["ai_visibility"] = found
    return found


class StudySerializer(serializers.ModelSerializer):
    patient = serializers.SerializerMethodField(
        help_text="Patient id; for API clients a pseudonym of their own (`anon-…`), unique to each client."
    )
    patient_number = serializers.IntegerField(
        source="patient_id",
        read_only=True,
        allow_null=True,
        help_text="The portal's number for the patient (the `patient_number` filter): identifies nobody outside "
        "it. Null, with `accession_number` empty, for clients that may not see patient identity.",
    )
    exam_model = serializers.CharField(source="exam_model.name", default=None)
    flag_left = serializers.SerializerMethodField(help_text="Left breast at or above the breast-level threshold.")
    flag_right = serializers.SerializerMethodField(help_text="Right breast at or above the breast-level threshold.")

    class Meta:
        model = Study
        fields = [
            "id",
            "study_uid",
            "accession_number",
            "study_date",
            "patient",
            "patient_number",
            "site",
            "status",
            "exam_score",
            "exam_flag",
            "score_left",
            "score_right",
            "flag_left",
            "flag_right",
            "source_kind",
            "exam_model",
            "created",
            "updated",
        ]
        read_only_fields = fields

    def get_patient(self, study: Study) -> str:
        viewer = _viewer(self)
        if viewer is not None and can_see_identity(viewer):
            return study.patient.patient_id
        return pseudonym(study.patient.patient_id, viewer)

    def get_flag_left(self, study: Study) -> bool | None:
        return self._breast_flag(study, study.score_left)

    def get_flag_right(self, study: Study) -> bool | None:
        return self._breast_flag(study, study.score_right)

    def _breast_flag(self, study: Study, score: float | None) -> bool | None:
        """The breast-level flag (the exam is flagged exactly when one of its breasts is)."""
        if score is None or study.exam_model is None:
            return None
        return score >= thresholds_of(study.exam_model, study.source_kind)["breast"]

    def to_representation(self, study: Study) -> dict:
        data = super().to_representation(study)
        viewer = _viewer(self)
        if viewer is None or not can_see_identity(viewer):
            # The portal's patient number would tell a client that uploaded a guessed PatientID whether that
            # woman was already in the programme (an old number); the accession number identifies the exam.
            data.update(patient_number=None, accession_number="")
        if not visibility_of(self).shows(study):  # the reading policy blinds this reader (screening.blinding)
            data.update(
                exam_score=None,
                exam_flag=None,
                score_left=None,
                score_right=None,
                flag_left=None,
                flag_right=None,
                source_kind=None,
                exam_model=None,
            )
            for key in ("threshold", "thresholds"):
                if key in data:
                    data[key] = None
        return data


class PatientSerializer(serializers.ModelSerializer):
    """Identity fields are blank and the id is the viewer's own pseudonym unless the user may see identity."""

    class Meta:
        model = Patient
        fields = ["id", "patient_id", "name", "birth_date", "sex", "created"]
        read_only_fields = fields

    def to_representation(self, patient: Patient) -> dict:
        data = super().to_representation(patient)
        viewer = _viewer(self)
        if viewer is None or not can_see_identity(viewer):
            # No portal number or creation date either: both say whether she was in the programme before.
            data.update(
                id=None, patient_id=pseudonym(patient.patient_id, viewer), name="", birth_date=None, created=None
            )
        return data


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


class StudyDetailSerializer(StudySerializer):
    """A study with its images and predictions: what every role that may see the study gets."""

    images = ImageSerializer(many=True, read_only=True)
    threshold = serializers.SerializerMethodField(
        help_text="Breast-level operating point of the model that scored the study: a breast at or above it is "
        "flagged, and the exam is flagged exactly when one of its breasts is."
    )
    thresholds = serializers.SerializerMethodField(
        help_text="Every level's threshold for this study's source kind: image, breast (the exam follows its "
        "breasts) and region (AI marks are drawn only at or above it)."
    )

    class Meta(StudySerializer.Meta):
        fields = [*StudySerializer.Meta.fields, "threshold", "thresholds", "images"]
        read_only_fields = fields

    def get_threshold(self, study: Study) -> float | None:
        levels = self.get_thresholds(study)
        return None if levels is None else levels["breast"]

    def get_thresholds(self, study: Study) -> dict[str, float] | None:
        return thresholds_of(study.exam_model, study.source_kind)


class DicomExportSerializer(serializers.ModelSerializer):
    """One SR (AI result or decision) sent to one DICOM destination, and how that went."""

    class Meta:
        model = DicomExport
        fields = ["id", "kind", "review", "destination", "status", "attempts", "error", "sop_instance_uid", "updated"]
        read_only_fields = fields


class StudyCaseSerializer(StudyDetailSerializer):
    """The study detail for radiologists and admins: with its decisions (notes, reader names)."""

    reviews = ReviewSerializer(many=True, read_only=True, help_text="Radiologists and admins only.")
    exports = DicomExportSerializer(
        many=True, read_only=True, help_text="SRs sent back to the PACS (radiologists and admins only)."
    )

    class Meta(StudyDetailSerializer.Meta):
        fields = [*StudyDetailSerializer.Meta.fields, "reviews", "exports"]
        read_only_fields = fields

    def to_representation(self, study: Study) -> dict:
        data = super().to_representation(study)
        if not visibility_of(self).shows(study):  # an AI-result SR sent before the policy blinded the AI
            data["exports"] = [row for row in data["exports"] if row["kind"] != DicomExport.Kind.AI]
        return data
