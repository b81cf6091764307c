"""Pages. Thin: parse the request, call a selector or service, render."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import JsonResponse
from django.shortcuts import render

from . import selectors
from .roles import can_read_cases, can_upload


def _require(allowed: bool) -> None:
    if not allowed:
        raise PermissionDenied


@login_required
def worklist(request):
    _require(can_read_cases(request.user))
    page = Paginator(selectors.studies_for_worklist(request.user), 50).get_page(request.GET.get("page"))
    return render(request, "screening/worklist.html", {"page": page})


@login_required
def upload(request):
    _require(can_upload(request.user))
    return render(request, "screening/upload.html")


def healthz(request):
    """Liveness for load balancers and compose: the database answers. No data, so no login."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
