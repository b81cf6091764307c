"""Predictions as the API shows them: the image-level flag at its model's threshold."""

from __future__ import annotations

from rest_framework import serializers

from ml.scoring import thresholds_for
from screening.api.fields import url_with_id
from screening.models import Prediction


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
