"""Response headers the portal adds to every page and API answer."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from screening.services.audit import reads_patient_data, record_read


class NoStoreByDefaultMiddleware:
    """`Cache-Control: no-store` on every dynamic response that does not set its own policy.

    Pages and API answers carry patient data, which must not stay in a browser's or a shared
    proxy's cache. A view that wants caching says so (image renditions: `private, max-age`);
    static files never get here (WhiteNoise answers them earlier).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not response.has_header("Cache-Control"):
            response["Cache-Control"] = "no-store"
        return response


class ReadAuditMiddleware:
    """Every read of patient data is an audit event: each GET (or HEAD) a signed-in user makes and the portal
    answers with 2xx, on any route but those screening.services.audit lists as holding none.

    One place for every face (pages, API, DICOMweb searches, the admin's case records), so a new endpoint is
    audited without asking; one insert per request, whatever the number of rows it lists. The user is the one
    the view authenticated (a token's user too: DRF sets it on the request).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.method in ("GET", "HEAD") and 200 <= response.status_code < 300:
            match, user = request.resolver_match, getattr(request, "user", None)
            if match is not None and user is not None and user.is_authenticated and reads_patient_data(match.view_name):
                record_read(request=request, route=match.view_name, arguments=match.kwargs)
        return response
