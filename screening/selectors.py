"""Every shared read: pages and API use these, with their joins done here."""

from __future__ import annotations

import hashlib
import hmac

from django.conf import settings
from django.db.models import Count, Prefetch, QuerySet

from .models import Image, Prediction, Study


def _predictions_newest_first() -> Prefetch:
    return Prefetch(
        "predictions",
        queryset=Prediction.objects.select_related("model_version").order_by("-model_version_id", "-id"),
    )


def images_visible_to(user) -> QuerySet[Image]:
    # Every role may list images; identity fields are hidden by the serializers.
    return (
        Image.objects.select_related("study", "study__patient")
        .prefetch_related(_predictions_newest_first())
        .order_by("-created", "-id")
    )


def current_prediction(image: Image) -> Prediction | None:
    """The prediction by the newest model version (uses the prefetch from the selectors above)."""
    rows = list(image.predictions.all())
    return rows[0] if rows else None


def studies_for_worklist(user) -> QuerySet[Study]:
    return (
        Study.objects.select_related("patient", "exam_model")
        .annotate(image_count=Count("images"))
        .order_by("status", "-exam_score", "-study_date", "-id")
    )


def study_detail(pk: int) -> Study:
    return (
        Study.objects.select_related("patient", "exam_model")
        .prefetch_related(Prefetch("images", queryset=Image.objects.prefetch_related(_predictions_newest_first())))
        .get(pk=pk)
    )


def pseudonym(patient_id: str) -> str:
    """A stable pseudonymous id for clients not allowed to see patient identity."""
    digest = hmac.new(settings.SECRET_KEY.encode(), patient_id.encode(), hashlib.sha256).hexdigest()
    return f"anon-{digest[:16]}"
