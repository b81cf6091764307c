"""Admin building blocks every sub-domain's admin shares: read-only records, blinding (the same rule as every
other face, screening.blinding), the site choice, links to audit trails, and writes through the services."""

from __future__ import annotations

from django import forms
from django.db import transaction
from django.urls import reverse
from django.utils.html import format_html

from screening.audit.services import client_ip
from screening.blinding import ai_visibility
from screening.sites.selectors import site_codes


class AIBlindingMixin:
    """Blinding holds in the admin too (screening.blinding): a staff user who reads blind (a radiologist or
    arbitrator granted view permissions) gets no AI column or filter in lists, and no AI field of a case whose
    AI result the reading policy hides from them; `ai_rows_only` drops such rows altogether."""

    ai_fields: tuple[str, ...] = ()
    ai_study_path = ""  # from this model to its study; with ai_rows_only, rows of hidden cases are left out
    ai_rows_only = False

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if self.ai_rows_only:
            return queryset.filter(ai_visibility(request.user).condition(self.ai_study_path))
        return queryset

    def _hidden(self, request, obj=None) -> bool:
        if not self.ai_fields:
            return False
        visibility = ai_visibility(request.user)
        return visibility.hides_any and (obj is None or not visibility.shows(obj))

    def lookup_allowed(self, lookup, value, request=None):
        # The admin allows a lookup on any local field (`?exam_flag__exact=1`): a count of what the AI hid.
        if request is not None and lookup.split("__")[0] in self.ai_fields and self._hidden(request):
            return False
        return super().lookup_allowed(lookup, value, request)

    def get_list_display(self, request):
        shown = super().get_list_display(request)
        return [f for f in shown if f not in self.ai_fields] if self._hidden(request) else shown

    def get_list_filter(self, request):
        shown = super().get_list_filter(request)
        return [f for f in shown if f not in self.ai_fields] if self._hidden(request) else shown

    def get_fields(self, request, obj=None):
        shown = super().get_fields(request, obj)
        return [f for f in shown if f not in self.ai_fields] if self._hidden(request, obj) else shown

    def get_readonly_fields(self, request, obj=None):
        shown = super().get_readonly_fields(request, obj)
        return [f for f in shown if f not in self.ai_fields] if self._hidden(request, obj) else shown


class ReadOnlyMixin:
    """No add, change or delete for anyone, superusers included; whoever may view, views.

    For model admins and inlines alike (their has_*_permission signatures differ, hence *args).
    """

    def has_add_permission(self, request, *args):
        return False

    def has_change_permission(self, request, *args):
        return False

    def has_delete_permission(self, request, *args):
        return False


class SiteChoiceForm(forms.ModelForm):
    """`site` chosen among the sites an admin created (a typo would file studies under a site nobody reads)."""

    site = forms.ChoiceField(choices=())

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        codes = site_codes()
        current = getattr(self.instance, "site", None)
        if current and current not in codes:
            codes.append(current)
        self.fields["site"].choices = [(code, code) for code in codes]


def study_trail_link(study_id: int | None) -> str:
    """A link to a study's audit trail by id: it works for a deleted study too."""
    if study_id is None:
        return ""
    return format_html('<a href="{}">Study #{}</a>', reverse("study-audit", args=[study_id]), study_id)


class WritesThroughServiceMixin:
    """The admin's form edits a record, the service writes it: `save_service(obj, created=..., user=...,
    ip_address=...)` and `delete_service(obj, user=..., ip_address=...)` save or delete it with its audit
    event in one transaction. No write of the admin's own."""

    save_service = None
    delete_service = None

    def save_model(self, request, obj, form, change):
        type(self).save_service(obj, created=not change, user=request.user, ip_address=client_ip(request))

    def delete_model(self, request, obj):
        type(self).delete_service(obj, user=request.user, ip_address=client_ip(request))

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            for obj in queryset:
                self.delete_model(request, obj)
