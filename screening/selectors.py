"""Every shared read: pages and API use these, with their joins done here."""

from __future__ import annotations

from django.db.models import Count, QuerySet

from .models import Image, Study


def images_visible_to(user) -> QuerySet[Image]:
    # Every role may see images it can upload; identity fields are hidden by serializers.
    return Image.objects.select_related("study", "study__patient").order_by("-created", "-id")


def studies_for_worklist(user) -> QuerySet[Study]:
    return (
        Study.objects.select_related("patient")
        .annotate(image_count=Count("images"))
        .order_by("status", "-exam_score", "-study_date", "-id")
    )
