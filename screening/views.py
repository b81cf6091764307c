"""Pages. Thin: parse the request, call a selector or service, render."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_GET

from . import selectors, services
from .forms import WorklistForm
from .models import Study
from .roles import can_read_cases, can_upload, is_admin


def _require(allowed: bool) -> None:
    if not allowed:
        raise PermissionDenied


@require_GET
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


@require_GET
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
            "exports": list(study.exports.all()[:20]),  # SRs sent back to the PACS, newest first
        },
    )


@require_GET
@login_required
def study_audit(request, pk: int):
    """The audit trail of one case (admins). It outlives the study: a deleted one shows why it went."""
    _require(is_admin(request.user))
    study = Study.objects.filter(pk=pk).first()
    events = list(selectors.audit_trail(pk)[:500])
    if study is None and not events:
        raise Http404("No such study")
    deletion = next((e for e in events if e.action == "study_delete"), None) if study is None else None
    return render(
        request, "screening/audit.html", {"study_id": pk, "study": study, "deletion": deletion, "events": events}
    )


@require_GET
@login_required
def upload(request):
    _require(can_upload(request.user))
    return render(request, "screening/upload.html")


@require_GET
def healthz(request):
    """Liveness for load balancers and compose: the database answers. No data, so no login."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


def landing_url(user) -> str:
    """The first page a role may open: readers the worklist, other roles (API clients) the upload page."""
    if can_read_cases(user) or not can_upload(user):
        return reverse("worklist")
    return reverse("upload")


class PortalLoginView(LoginView):
    """The login page. Failed logins are counted by django-axes like every way in (portal.login_guard).

    After logging in, a role that may not read cases lands on a page it may open instead of the worklist.
    """

    http_method_names = ["get", "post", "head", "options"]

    def get_success_url(self) -> str:
        url = super().get_success_url()
        if url == reverse("worklist"):
            return landing_url(self.request.user)
        return url
