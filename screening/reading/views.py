"""Reading pages: my worklist, arbitration, the reading policy, assignment, outcomes, performance.

Thin like views.py: parse, call a selector or a service, render; a service's PortalError
becomes a message on the page.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from screening.accounts.roles import can_arbitrate_list, can_read_cases, can_record_outcomes, can_see_identity, is_admin
from screening.api.pagination import CappedPaginator
from screening.audit.services import client_ip
from screening.blinding import ai_visibility
from screening.errors import PortalError
from screening.intake import selectors
from screening.models import Outcome, ReadingPolicy, Study
from screening.reading.forms import AssignForm, OutcomeForm, OutcomeImportForm, PerformanceForm, PolicyForm
from screening.reading.services import outcomes, reading
from screening.reading.services.performance import performance
from screening.sites.services import clean_site, site_names
from screening.svg_plots import interval_plot


def _require(allowed: bool) -> None:
    if not allowed:
        raise PermissionDenied


def _site(request) -> str:
    """The site a reading page is about (`?site=`, or the form's `site`); an unknown code says so and shows
    the default site."""
    code = request.POST.get("site") or request.GET.get("site") or ""
    try:
        return clean_site(code)
    except PortalError as exc:
        messages.error(request, exc.message)
        return reading.DEFAULT_SITE


@require_safe
@login_required
def my_reading(request):
    """The cases that still need this reader's read, in the order the policy sets."""
    _require(can_read_cases(request.user))
    site = _site(request)
    policy = reading.policy_for(site)
    page = CappedPaginator(selectors.reading_worklist_for(request.user, policy), 50).get_page(request.GET.get("page"))
    visibility = ai_visibility(request.user)
    for study in page:
        visibility.mask(study)
    return render(
        request,
        "screening/reading.html",
        {
            "page": page,
            "policy": policy,
            "site": site,
            "sites": (names := site_names()),
            "site_name": names.get(site, site),
            "can_arbitrate": can_arbitrate_list(request.user),
        },
    )


@require_safe
@login_required
def arbitration(request):
    """Discordant pairs awaiting the final decision (arbitrators work it, admins watch it)."""
    _require(can_arbitrate_list(request.user))
    page = CappedPaginator(selectors.arbitration_worklist(request.user), 50).get_page(request.GET.get("page"))
    policies = {policy.site: policy for policy in reading.current_policies()}
    for study in page:
        study.policy = policies.get(study.site) or reading.policy_of(study)
    return render(request, "screening/arbitration.html", {"page": page})


@require_http_methods(["GET", "HEAD", "POST"])
@login_required
def policy(request):
    """Set the site's reading policy (a new version; the history stays), with its expected workload."""
    _require(is_admin(request.user))
    site = _site(request)
    current = reading.policy_for(site)
    if request.method == "POST":
        form = PolicyForm(request.POST)
        if form.is_valid():
            try:
                reading.set_policy(user=request.user, ip_address=client_ip(request), site=site, **form.cleaned_data)
            except PortalError as exc:
                form.add_error(exc.field if exc.field in form.fields else None, exc.message)
            else:
                messages.success(request, f"Reading policy of {site_names().get(site, site)} saved.")
                return redirect(f"{reverse('reading-policy')}?{urlencode({'site': site})}")
    else:
        form = PolicyForm(
            initial={
                "mode": current.mode,
                "triage_threshold": current.triage_threshold,
                "resolution": current.resolution,
                "blind_ai": current.blind_ai,
                "order": current.order,
                "lock_minutes": current.lock_minutes,
            }
        )
    thresholds = [0.05, 0.1, 0.2, 0.3, 0.5]
    if current.triage_threshold is not None and current.triage_threshold not in thresholds:
        thresholds = sorted([*thresholds, current.triage_threshold])
    return render(
        request,
        "screening/reading_policy.html",
        {
            "form": form,
            "current": current,
            "site": site,
            "sites": (names := site_names()),
            "site_name": names.get(site, site),
            "history": ReadingPolicy.objects.filter(site=site).select_related("created_by")[:50],
            "workload": [(t, reading.expected_workload(t, site=site)) for t in thresholds],
            "double": reading.expected_workload(None, ReadingPolicy.Mode.DOUBLE, site),
        },
    )


@require_http_methods(["GET", "HEAD", "POST"])
@login_required
def assign(request):
    """Assign or reassign studies to a reader (admins); every change is audited. The form is on the reading
    page: a GET (the address the README names, typed in) goes there."""
    _require(is_admin(request.user))
    if request.method != "POST":
        return redirect(f"{reverse('reading')}?{urlencode({'site': _site(request)})}#assign")
    form = AssignForm(request.POST)
    if not form.is_valid():
        messages.error(request, "; ".join(e for errors in form.errors.values() for e in errors))
        return redirect(f"{reverse('reading')}?{urlencode({'site': _site(request)})}")
    name = form.cleaned_data["reader"].strip()
    reader = get_user_model().objects.filter(username=name, is_active=True).first() if name else None
    if name and reader is None:
        messages.error(request, f"no active user named {name}")
        return redirect(f"{reverse('reading')}?{urlencode({'site': _site(request)})}")
    studies = list(Study.objects.filter(pk__in=form.cleaned_data["studies"]))
    try:
        changed = reading.assign(studies=studies, reader=reader, user=request.user, ip_address=client_ip(request))
    except PortalError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{changed} stud{'y' if changed == 1 else 'ies'} assigned.")
    return redirect(f"{reverse('reading')}?{urlencode({'site': _site(request)})}")


@require_POST
@login_required
def release_lock(request, pk: int):
    """The reader left the case (the page sends this as it unloads): the case is free for others."""
    _require(can_read_cases(request.user))
    study = get_object_or_404(Study, pk=pk)
    reading.release_lock(study=study, user=request.user, reason="leave", ip_address=client_ip(request))
    return HttpResponse(status=204)


@require_http_methods(["GET", "HEAD", "POST"])
@login_required
def outcome_list(request):
    """Record outcomes one by one or import a CSV; the latest outcomes below."""
    _require(can_record_outcomes(request.user))
    form, upload = OutcomeForm(), OutcomeImportForm()
    if request.method == "POST":
        try:
            if "file" in request.FILES:
                upload = OutcomeImportForm(request.POST, request.FILES)
                if upload.is_valid():
                    data = upload.cleaned_data["file"].read(outcomes.CSV_MAX_BYTES + 1)
                    n = outcomes.import_csv(data=data, user=request.user, ip_address=client_ip(request))
                    messages.success(request, f"{n} outcomes imported.")
                    return redirect("outcomes")
            else:
                form = OutcomeForm(request.POST)
                if form.is_valid():
                    data = form.cleaned_data
                    study = selectors.study_by_reference(request.user, data["study"], data["study_date"])
                    outcomes.record_outcome(
                        item=outcomes.OutcomeInput(
                            study=study,
                            laterality=data["laterality"],
                            result=data["result"],
                            cancer_type=data["cancer_type"] or "",
                            diagnosed_on=data["diagnosed_on"],
                        ),
                        user=request.user,
                        ip_address=client_ip(request),
                    )
                    messages.success(request, "Outcome recorded.")
                    return redirect("outcomes")
        except PortalError as exc:
            target = upload if "file" in request.FILES else form
            target.add_error(exc.field if exc.field in target.fields else None, exc.message)
    # Only the outcomes of studies this user may see: an API client its own uploads' (as the outcomes API).
    visible = selectors.studies_visible_to(request.user).values("pk")
    recent = (
        Outcome.objects.filter(study__in=visible).select_related("study__patient", "recorded_by").order_by("-id")[:100]
    )
    return render(
        request,
        "screening/outcomes.html",
        {"form": form, "upload": upload, "recent": recent, "show_identity": can_see_identity(request.user)},
    )


@require_safe
@login_required
def performance_page(request):
    """Readers, model versions and the programme, with intervals, plotted on the server."""
    _require(is_admin(request.user))
    form = PerformanceForm(request.GET or None)
    figures = performance(form.filters())
    rows = [("Programme", figures["programme"])]
    rows += [(r["reader"], r) for r in figures["readers"]]
    rows += [(f"AI {m['model']}", m) for m in figures["models"]]

    def percent(title: str, key: str, axis: str):
        return interval_plot(title, [(label, f[key]) for label, f in rows], axis=axis, upper=1.0, scale=100, unit="%")

    plots = [
        percent("Recall rate", "recall_rate", "screened exams recalled"),
        interval_plot(
            "Cancer detection rate",
            [(label, f["cancer_detection_per_1000"]) for label, f in rows],
            axis="cancers detected per 1,000 screened exams",
        ),
        percent("Sensitivity", "sensitivity", "cancers recalled, of exams with a cancer outcome"),
        percent("Specificity", "specificity", "exams not recalled, of exams with a no-cancer outcome"),
    ]
    return render(
        request, "screening/performance.html", {"form": form, "figures": figures, "rows": rows, "plots": plots}
    )
