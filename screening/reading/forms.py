"""Forms of the reading pages: policy, assignment, outcomes, performance filters."""

from __future__ import annotations

from django import forms

from screening.models import Outcome, ReadingPolicy, Review, Study
from screening.reading.performance import PerformanceFilters
from screening.reading.selectors import WORKLIST_ORDERINGS, WorklistFilters
from screening.sites.selectors import site_names


class PolicyForm(forms.Form):
    mode = forms.ChoiceField(choices=ReadingPolicy.Mode.choices)
    triage_threshold = forms.FloatField(
        required=False, min_value=0, max_value=1, label="AI triage score", help_text="AI-triaged only"
    )
    resolution = forms.ChoiceField(choices=ReadingPolicy.Resolution.choices, label="Discordant reads")
    blind_ai = forms.BooleanField(required=False, label="Hide the AI result until the reader has read")
    order = forms.ChoiceField(choices=ReadingPolicy.Order.choices, label="Worklist order")
    lock_minutes = forms.IntegerField(min_value=1, max_value=240, initial=15, label="Lock time-out (minutes)")
    note = forms.CharField(required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))


class AssignForm(forms.Form):
    studies = forms.CharField(max_length=2000, help_text="Study numbers, separated by commas or spaces")
    reader = forms.CharField(max_length=150, required=False, help_text="User name; empty to unassign")

    def clean_studies(self) -> list[int]:
        parts = self.cleaned_data["studies"].replace(",", " ").split()
        if not parts or not all(p.lstrip("#").isdigit() for p in parts):
            raise forms.ValidationError("give study numbers such as 12, 15")
        return sorted({int(p.lstrip("#")) for p in parts})


class OutcomeForm(forms.Form):
    study = forms.CharField(
        max_length=64, label="Accession number or patient ID", help_text="as on the request or the pathology report"
    )
    study_date = forms.DateField(
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="needed only when the patient has several studies",
    )
    laterality = forms.ChoiceField(choices=[("L", "Left"), ("R", "Right")], label="Breast")
    result = forms.ChoiceField(choices=Outcome.Result.choices)
    cancer_type = forms.ChoiceField(choices=Outcome.CancerType.choices, required=False, label="Cancer type")
    diagnosed_on = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))


class OutcomeImportForm(forms.Form):
    file = forms.FileField(help_text="CSV: study_uid, laterality, result, cancer_type, diagnosed_on")


class PerformanceForm(forms.Form):
    date_from = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    density = forms.ChoiceField(required=False, choices=[("", "All"), *Review.Density.choices])
    site = forms.ChoiceField(required=False, choices=())

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["site"].choices = [("", "All sites"), *site_names().items()]

    def filters(self) -> PerformanceFilters:
        data = self.cleaned_data if self.is_bound and self.is_valid() else {}
        return PerformanceFilters(
            date_from=data.get("date_from"),
            date_to=data.get("date_to"),
            density=data.get("density") or "",
            site=data.get("site") or "",
        )


class WorklistForm(forms.Form):
    status = forms.ChoiceField(
        required=False, choices=[("unread", "Unread"), ("", "All"), *Study.Status.choices], initial="unread"
    )
    flag = forms.ChoiceField(
        required=False,
        label="AI",
        choices=[
            ("", "Any"),
            ("above", "Above operating point"),
            ("below", "Below operating point"),
            ("none", "No score"),
        ],
    )
    date_from = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    mine = forms.BooleanField(required=False, label="Assigned to me")
    ordering = forms.ChoiceField(
        required=False,
        label="Order",
        choices=[(k, label) for k, (label, _) in WORKLIST_ORDERINGS.items()],
        initial="score",
    )

    def filters(self) -> WorklistFilters:
        """Unbound (first visit) or without a status: unread studies, in the default order (selectors.worklist_for)."""
        data = self.cleaned_data if self.is_bound and self.is_valid() else {}
        return WorklistFilters(
            status=data.get("status", "") if "status" in self.data else "unread",
            flag=data.get("flag", ""),
            date_from=data.get("date_from"),
            date_to=data.get("date_to"),
            mine=bool(data.get("mine")),
            ordering=data.get("ordering") or "",  # the selector's default: AI score, or date for a blinded reader
        )
