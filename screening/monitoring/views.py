"""The monitoring page (admins): alerts to acknowledge, drift and subgroup performance per model version."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST, require_safe

from screening.accounts.roles import is_admin, require
from screening.audit.services import client_ip
from screening.errors import PortalError
from screening.models import ModelVersion, MonitoringAlert
from screening.monitoring import selectors, services
from screening.monitoring.report import dashboard
from screening.monitoring.subgroups import DIMENSIONS


def _version(request) -> ModelVersion | None:
    raw = request.GET.get("version", "")
    if raw:
        try:
            return ModelVersion.objects.filter(pk=int(raw)).first()
        except ValueError:
            return None
    return ModelVersion.objects.filter(status=ModelVersion.Status.CHAMPION).first()


@login_required
@require_safe
def monitoring(request):
    require(is_admin(request.user))
    version = _version(request)
    data = dashboard(version) if version else None
    return render(
        request,
        "screening/monitoring/monitoring.html",
        {
            "versions": ModelVersion.objects.order_by("-created"),
            "version": version,
            "data": data,
            "open_alerts": selectors.open_alerts()[:50],
            "dimensions": DIMENSIONS,
        },
    )


@login_required
@require_POST
def run_now(request, pk: int):
    require(is_admin(request.user))
    version = get_object_or_404(ModelVersion, pk=pk)
    try:
        run = services.request_run(version=version, user=request.user, ip_address=client_ip(request))
    except PortalError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Monitoring run #{run.pk} of {version.name} queued.")
    return redirect(f"{reverse('monitoring')}?version={version.pk}")


@login_required
@require_POST
def acknowledge(request, pk: int):
    require(is_admin(request.user))
    alert = get_object_or_404(MonitoringAlert, pk=pk)
    try:
        services.acknowledge(
            alert=alert, user=request.user, note=request.POST.get("note", ""), ip_address=client_ip(request)
        )
    except PortalError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Alert acknowledged.")
    return redirect(f"{reverse('monitoring')}?version={alert.model_version_id}")
