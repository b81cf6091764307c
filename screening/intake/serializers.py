"""Images, studies and patients as the API shows them, with what each viewer may see of them."""

from __future__ import annotations

from functools import cached_property

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from screening.accounts.roles import can_see_identity
from screening.ai.serializers import PredictionSerializer, thresholds_of
from screening.api.fields import _viewer, url_with_id, visibility_of
from screening.exchange.serializers import DicomExportSerializer, Hl7ExportSerializer
from screening.intake.selectors import current_prediction, pseudonym
from screening.intake.services.renditions import FAILED, PENDING, READY, rendition_state
from screening.models import CadReport, DicomExport, Image, Patient, Study
from screening.reading.serializers import ReviewSerializer


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


class CadReportSerializer(serializers.ModelSerializer):
    """The answer to an uploaded vendor CAD SR: where it was filed and whether its findings could be read. Its
    marks are the vendor's AI: they leave only through the viewer's data, under the reader's blinding."""

    kind = serializers.SerializerMethodField()
    marks_read = serializers.SerializerMethodField()

    class Meta:
        model = CadReport
        fields = ["id", "kind", "study", "sop_uid", "size_bytes", "marks_read", "parse_error", "created"]
        read_only_fields = fields

    def get_kind(self, report) -> str:
        return "cad_sr"

    def get_marks_read(self, report) -> bool:
        return not report.parse_error


class ImageSerializer(serializers.ModelSerializer):
    study = serializers.IntegerField(source="study_id", read_only=True)
    rendition_url = serializers.SerializerMethodField()
    preview_url = serializers.SerializerMethodField(
        help_text="A small JPEG of the rendition (longest side at most 1024): thumbnails, a first paint."
    )
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
            "preview_url",
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

    def get_preview_url(self, image: Image) -> str:
        return url_with_id("api-image-preview", image.pk)

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


class StudyCaseSerializer(StudyDetailSerializer):
    """The study detail for radiologists and admins: with its decisions (notes, reader names)."""

    reviews = ReviewSerializer(many=True, read_only=True, help_text="Radiologists and admins only.")
    exports = DicomExportSerializer(
        many=True,
        read_only=True,
        help_text="SRs sent back to the PACS, newest first (radiologists and admins only; a decision's only to "
        "those who may see the reads).",
    )
    hl7_exports = Hl7ExportSerializer(
        many=True,
        read_only=True,
        help_text="Final decisions sent to a RIS as HL7 ORU^R01, newest first (radiologists and admins who may "
        "see the reads: empty for a reader the reading policy blinds).",
    )

    class Meta(StudyDetailSerializer.Meta):
        fields = [*StudyDetailSerializer.Meta.fields, "reviews", "exports", "hl7_exports"]
        read_only_fields = fields

    def to_representation(self, study: Study) -> dict:
        data = super().to_representation(study)
        if not visibility_of(self).shows(study):  # an AI-result SR sent before the policy blinded the AI
            data["exports"] = [row for row in data["exports"] if row["kind"] != DicomExport.Kind.AI]
        return data
