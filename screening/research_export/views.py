"""The research export page (admins): projects, a new export (filters, options, reason), progress, the one download."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST, require_safe

from screening.accounts.roles import is_admin, require
from screening.audit.services import client_ip
from screening.errors import PortalError
from screening.models import ResearchExport, ResearchProject
from screening.research_export import selectors, services
from screening.research_export.responses import export_json, peek, stream_once
from screening.research_export.selectors import OUTCOMES, READINGS

FILTER_FIELDS = ("site", "date_from", "date_to", "outcome", "score_min", "score_max", "reading")
OPTION_FIELDS = ("retain_dates", "retain_patient_characteristics", "retain_device_identity", "include_burned_in")


@login_required
@require_safe
def exports(request):
    require(is_admin(request.user))
    services.release_stale_exports()
    return render(
        request,
        "screening/research_export/exports.html",
        {
            "projects": selectors.projects(),
            "exports": selectors.exports_of(request.user)[:50],
            "outcomes": OUTCOMES,
            "readings": READINGS,
        },
    )


@login_required
@require_POST
def new_project(request):
    require(is_admin(request.user))
    try:
        project = services.create_project(
            name=request.POST.get("name", ""), user=request.user, ip_address=client_ip(request)
        )
    except PortalError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Project {project.name} created.")
    return redirect("research-exports")


@login_required
@require_POST
def new_export(request):
    require(is_admin(request.user))
    try:
        project_id = int(request.POST.get("project", ""))
    except ValueError:
        messages.error(request, "choose an export project")
        return redirect("research-exports")
    project = get_object_or_404(ResearchProject, pk=project_id)
    try:
        export = services.request_export(
            project=project,
            user=request.user,
            reason=request.POST.get("reason", ""),
            filters={f: request.POST.get(f, "") for f in FILTER_FIELDS},
            options={f: request.POST.get(f) == "on" for f in OPTION_FIELDS},
            ip_address=client_ip(request),
        )
    except PortalError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Export #{export.pk} queued: it is built in the background.")
    return redirect("research-exports")


@login_required
@require_safe
def status(request, pk: int):
    require(is_admin(request.user))
    export = get_object_or_404(selectors.exports_of(request.user), pk=pk)
    return JsonResponse(export_json(export))


@login_required
@require_safe
def download(request, pk: int):
    require(is_admin(request.user))
    export = get_object_or_404(ResearchExport.objects.select_related("project"), pk=pk)
    try:
        return peek(export, request) if request.method == "HEAD" else stream_once(export, request)
    except PortalError as exc:
        if exc.status == 404:
            raise Http404(exc.message) from None
        messages.error(request, exc.message)
        return redirect("research-exports")
