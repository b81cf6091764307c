"""The upload page, and the admin pages that keep images under the right woman (issue 21): the
reconciliation queue of studies held for demographics that disagree with the stored woman's, and the refile
forms for an image or a study.

Thin: reads come from selectors and the filing history, writes go through screening.intake.services.filing; a refused
correction comes back as a message on the page. Patient IDs travel in POST bodies, never in URLs.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from screening.accounts.roles import can_upload, is_admin, require
from screening.audit.services import client_ip
from screening.errors import PortalError
from screening.intake.selectors import held_for_reconciliation, is_held
from screening.intake.services import filing
from screening.models import DemographicsConflict, Image, Study
from screening.sites.selectors import site_names


class RefileImageForm(forms.Form):
    patient_id = forms.CharField(
        label="Patient ID", max_length=64, required=False, help_text="Blank: the woman it is filed under now."
    )
    laterality = forms.ChoiceField(choices=[("", "unchanged"), *Image.Laterality.choices], required=False)
    view = forms.ChoiceField(choices=[("", "unchanged"), *Image.View.choices], required=False)
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=2000)


class RefileStudyForm(forms.Form):
    patient_id = forms.CharField(label="Patient ID", max_length=64)
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=2000)


@login_required
@require_safe
def reconciliation(request):
    """Studies held because their demographics disagree with the stored woman's, oldest first."""
    require(is_admin(request.user))
    return render(request, "screening/reconciliation.html", {"conflicts": held_for_reconciliation()})


@login_required
@require_POST
def reconcile(request, pk: int):
    """Resolve one held study: the same woman (optionally taking the received demographics), or refile it."""
    require(is_admin(request.user))
    conflict = get_object_or_404(DemographicsConflict.objects.select_related("study"), pk=pk)
    try:
        if request.POST.get("action") == "same_woman":
            filing.reconcile_same_woman(
                conflict=conflict,
                user=request.user,
                note=request.POST.get("note", "").strip(),
                update_demographics=request.POST.get("update_demographics") == "on",
                ip_address=client_ip(request),
            )
            messages.success(request, f"Study #{conflict.study_id} released as the same woman.")
        elif request.POST.get("action") == "refile":
            if conflict.resolution:
                raise PortalError("this conflict was already resolved")
            filing.refile_study(
                study=conflict.study,
                user=request.user,
                reason=request.POST.get("reason", ""),
                patient_id=request.POST.get("patient_id", ""),
                ip_address=client_ip(request),
            )
            messages.success(request, f"Study #{conflict.study_id} refiled.")
        else:
            raise PortalError("choose 'same woman' or 'refile'")
    except PortalError as exc:
        messages.error(request, exc.message)
    return redirect("filing-reconciliation")


def _refile(request, *, template: str, form_class, run, context: dict):
    form = form_class(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            run(form.cleaned_data)
        except PortalError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            messages.success(request, "Filing corrected; the old filing stays in the history below.")
            return redirect(request.path)
    return render(request, template, {"form": form, **context})


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def refile_image(request, pk: int):
    require(is_admin(request.user))
    image = get_object_or_404(Image.objects.select_related("study__patient"), pk=pk)

    def run(data):
        filing.refile_image(image=image, user=request.user, ip_address=client_ip(request), **data)

    return _refile(
        request,
        template="screening/refile.html",
        form_class=RefileImageForm,
        run=run,
        context={"image": image, "histories": [(image, filing.filing_history(image))]},
    )


@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def refile_study(request, pk: int):
    require(is_admin(request.user))
    study = get_object_or_404(Study.objects.select_related("patient"), pk=pk)

    def run(data):
        filing.refile_study(study=study, user=request.user, ip_address=client_ip(request), **data)

    images = list(study.images.select_related("study__patient").order_by("pk"))
    return _refile(
        request,
        template="screening/refile.html",
        form_class=RefileStudyForm,
        run=run,
        context={
            "study": study,
            "held": is_held(study),
            "histories": [(image, filing.filing_history(image)) for image in images],
        },
    )


@require_safe
@login_required
def upload(request):
    require(can_upload(request.user))
    return render(request, "screening/upload.html", {"sites": site_names()})
