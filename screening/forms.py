from __future__ import annotations

from django import forms

from screening.intake.selectors import WORKLIST_ORDERINGS, WorklistFilters
from screening.models import Study


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
