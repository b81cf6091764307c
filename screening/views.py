"""Pages. Thin: parse the request, call a selector or service, render."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse

from . import selectors, services
from .forms import WorklistForm
from .models import Study
from .roles import can_read_cases, can_upload, is_admin


def _require(allowed: bool) -> None:
    if not allowed:
        raise PermissionDenied


@login_required
def worklist(request):
    """Unread studies first, ordered by AI exam score; filters and orderings from the query string."""
    _require(can_read_cases(request.user))
    form = WorklistForm(request.GET or None)
    studies = selectors.worklist_for(request.user, form.filters())
    page = Paginator(studies, 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "screening/worklist.html",
        {"page": page, "form": form, "counts": selectors.worklist_counts(), "query": query.urlencode()},
    )


@login_required
def study_viewer(request, pk: int):
    """The case: four views, the AI result and the decision form. Opening it is audited."""
    _require(can_read_cases(request.user))
    study = get_object_or_404(Study.objects.select_related("patient"), pk=pk)
    services.case_opened(study=study, user=request.user, ip_address=services.client_ip(request))
    following = selectors.next_study_after(request.user, study)
    return render(
        request,
        "screening/viewer.html",
        {
            "study": study,
            "study_json_url": reverse("api-study-detail", args=[study.pk]),
            "reviews_url": reverse("api-study-reviews", args=[study.pk]),
            "worklist_url": reverse("worklist"),
            "next_url": reverse("study-viewer", args=[following.pk]) if following else None,
        },
    )


@login_required
def study_audit(request, pk: int):
    """The audit trail of one case (admins)."""
    _require(is_admin(request.user))
    study = get_object_or_404(Study, pk=pk)
    return render(request, "screening/audit.html", {"study": study, "events": selectors.audit_trail(study)[:500]})


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
