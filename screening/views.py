"""Pages. Thin: parse the request, call a selector or service, render."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.files.storage import default_storage
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, JsonResponse
from django.shortcuts import get_object_or_404, render

from . import selectors
from .models import Image
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


@login_required
def image_rendition(request, pk: int):
    """The browser rendition of an image, streamed after the permission check (never a public URL)."""
    _require(can_upload(request.user))
    image = get_object_or_404(Image, pk=pk)
    if not image.rendition or not default_storage.exists(image.rendition.name):
        raise Http404("rendition missing")
    response = FileResponse(default_storage.open(image.rendition.name, "rb"), content_type="image/png")
    response["Cache-Control"] = "private, max-age=3600"
    return response


def healthz(request):
    """Liveness for load balancers and compose: the database answers. No data, so no login."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
