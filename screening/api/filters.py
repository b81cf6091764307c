"""Query filters for the API (documented in the OpenAPI schema by drf-spectacular).

No filter takes a patient identifier: a URL lands in access logs and browser history.
Patients are filtered by the portal's own number for them (`patient_number`).
"""

from __future__ import annotations

import django_filters as filters

from screening.accounts.roles import can_see_identity
from screening.blinding import ai_visibility
from screening.errors import PortalError
from screening.models import Image, Prediction, Study

PATIENT_NUMBER_HELP = "The portal's number for the patient (`patient_number` of a study, `id` of a patient)."
FLAG_CHOICES = [("above", "At or above the operating point"), ("below", "Below it"), ("none", "Not scored")]


def _by_patient_number(queryset, field: str, value, request):
    """The portal's patient number, only for users who may see identity: for another client, probing numbers
    against its own upload of a guessed PatientID would tell whether that woman was already known."""
    if value is None:
        return queryset
    if not can_see_identity(getattr(request, "user", None)):
        raise PortalError("patient_number is only for users who may see patient identity", field="patient_number")
    return queryset.filter(**{field: value})


def _flag(queryset, field: str, value: str, request):
    """Studies by their AI flag; refused to a reader blinded to any AI result (screening.blinding)."""
    if value:
        ai_visibility(getattr(request, "user", None)).refuse_query("filtering by the AI flag", "flag")
    if value == "above":
        return queryset.filter(**{field: True})
    if value == "below":
        return queryset.filter(**{field: False})
    if value == "none":
        return queryset.filter(**{f"{field}__isnull": True})
    return queryset


class StudyFilter(filters.FilterSet):
    status = filters.ChoiceFilter(choices=Study.Status.choices)
    date_from = filters.DateFilter(field_name="study_date", lookup_expr="gte")
    date_to = filters.DateFilter(field_name="study_date", lookup_expr="lte")
    flag = filters.ChoiceFilter(choices=FLAG_CHOICES, method="filter_flag", label="AI flag")
    patient_number = filters.NumberFilter(method="filter_patient_number", help_text=PATIENT_NUMBER_HELP)
    site = filters.CharFilter(field_name="site", help_text="Site code")
    ordering = filters.OrderingFilter(fields=(("exam_score", "exam_score"), ("study_date", "study_date"), ("id", "id")))

    class Meta:
        model = Study
        fields = ["status", "date_from", "date_to", "flag", "patient_number", "site"]

    def filter_flag(self, queryset, name, value):
        return _flag(queryset, "exam_flag", value, self.request)

    def filter_patient_number(self, queryset, name, value):
        return _by_patient_number(queryset, "patient_id", value, self.request)

    def filter_queryset(self, queryset):
        if any(key.lstrip("-") == "exam_score" for key in self.form.cleaned_data.get("ordering") or []):
            ai_visibility(getattr(self.request, "user", None)).refuse_query("ordering by the AI score", "ordering")
        return super().filter_queryset(queryset)


class ImageFilter(filters.FilterSet):
    status = filters.ChoiceFilter(choices=Image.Status.choices)
    laterality = filters.ChoiceFilter(choices=Image.Laterality.choices)
    view = filters.ChoiceFilter(choices=Image.View.choices)
    study = filters.NumberFilter(field_name="study_id")
    date_from = filters.DateFilter(field_name="study__study_date", lookup_expr="gte")
    date_to = filters.DateFilter(field_name="study__study_date", lookup_expr="lte")
    flag = filters.ChoiceFilter(choices=FLAG_CHOICES, method="filter_flag", label="AI flag of the study")
    patient_number = filters.NumberFilter(method="filter_patient_number", help_text=PATIENT_NUMBER_HELP)
    ordering = filters.OrderingFilter(fields=(("created", "created"), ("id", "id")))

    class Meta:
        model = Image
        fields = ["status", "laterality", "view", "study", "date_from", "date_to", "flag", "patient_number"]

    def filter_flag(self, queryset, name, value):
        return _flag(queryset, "study__exam_flag", value, self.request)

    def filter_patient_number(self, queryset, name, value):
        return _by_patient_number(queryset, "study__patient_id", value, self.request)


class PredictionFilter(filters.FilterSet):
    status = filters.ChoiceFilter(choices=Prediction.Status.choices)
    model_version = filters.CharFilter(field_name="model_version__name")
    image = filters.NumberFilter(field_name="image_id")
    study = filters.NumberFilter(field_name="image__study_id")
    laterality = filters.ChoiceFilter(field_name="image__laterality", choices=Image.Laterality.choices)

    class Meta:
        model = Prediction
        fields = ["status", "model_version", "image", "study", "laterality"]
