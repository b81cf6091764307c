"""Error pages and the favicon, for every part of the site.

Pages get styled templates that extend base.html (navigation, log out); anything under /api/
gets the API's JSON error shape, as a DRF view would answer. Django uses these only with
DEBUG off, which is the default.
"""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, HttpResponseServerError, JsonResponse
from django.shortcuts import render
from django.template import loader
from django.templatetags.static import static
from django.views.decorators.http import require_safe

log = logging.getLogger(__name__)


def _api_error(request: HttpRequest, code: str, message: str, status: int) -> JsonResponse | None:
    from screening.api.errors import error_body

    if request.path.startswith("/api/"):
        return JsonResponse(error_body(code, message), status=status)
    return None


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    message = "You do not have permission to perform this action."
    return _api_error(request, "permission_denied", message, 403) or render(request, "403.html", status=403)


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _api_error(request, "not_found", "Not found.", 404) or render(request, "404.html", status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    message = "The server failed to answer this request; the error has been logged."
    api = _api_error(request, "server_error", message, 500)
    if api is not None:
        return api
    try:
        return render(request, "500.html", status=500)
    except Exception:
        # The failure may be what the page needs (the database, for the navigation): show it without.
        log.exception("the error page could not be rendered with the request")
        return HttpResponseServerError(loader.render_to_string("500.html"))


@require_safe
def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask for /favicon.ico whatever the page links; a temporary redirect follows the static hash."""
    return HttpResponseRedirect(static("favicon.svg"))


@require_safe
def healthz(request):
    """Liveness for load balancers and compose: the database answers. No data, so no login."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
