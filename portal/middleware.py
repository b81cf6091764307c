"""Response headers the portal adds to every page and API answer, and the answer when a backing service is down."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

from screening.audit.services import reads_patient_data, record_read

logger = logging.getLogger(__name__)


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


class DicomWebCorsMiddleware:
    """CORS for DICOMweb (/dicomweb/), for the origins a site allows (PORTAL_DICOMWEB_CORS_ORIGINS; none by
    default): a viewer served from another origin (OHIF) may call it with a token in `Authorization`.

    A preflight (OPTIONS with Access-Control-Request-Method) from an allowed origin is answered here, before
    authentication: browsers send it without credentials. Cookies are never allowed cross-origin
    (no Access-Control-Allow-Credentials), so another origin cannot ride a portal session. Other origins
    get no CORS headers at all, and the browser keeps the answer from them.
    """

    ALLOW_METHODS = "GET, POST, OPTIONS"
    ALLOW_HEADERS = "Authorization, Accept, Content-Type"
    EXPOSE_HEADERS = "Content-Type, Content-Length, Content-Location, Warning, Retry-After"

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        from django.conf import settings

        origin = request.headers.get("Origin", "")
        if not request.path.startswith("/dicomweb/") or origin not in settings.PORTAL_DICOMWEB_CORS_ORIGINS:
            return self.get_response(request)
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            response = HttpResponse(status=204)
            response["Access-Control-Allow-Methods"] = self.ALLOW_METHODS
            response["Access-Control-Allow-Headers"] = self.ALLOW_HEADERS
            response["Access-Control-Max-Age"] = "600"
        else:
            response = self.get_response(request)
            response["Access-Control-Expose-Headers"] = self.EXPOSE_HEADERS
        response["Access-Control-Allow-Origin"] = origin
        response["Vary"] = ", ".join(filter(None, [response.get("Vary", ""), "Origin"]))
        return response


class ServiceUnavailableMiddleware:
    """A backing service that is configured but down (Redis: the cache behind throttles, idempotency keys and
    the login guard) answers 503 with Retry-After, in the API's JSON error shape or as a page; never a 500."""

    RETRY_AFTER = "30"

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        if not isinstance(exception, RedisConnectionError | RedisTimeoutError):
            return None
        logger.error("a backing service is down: %s on %s", type(exception).__name__, request.path)
        message = "the portal's cache (Redis) is unreachable; try again shortly"
        if request.path.startswith(("/api/", "/dicomweb/")) or "json" in request.headers.get("Accept", ""):
            response = JsonResponse({"error": {"code": "service_unavailable", "message": message}}, status=503)
        else:
            response = HttpResponse(
                f"<!doctype html><title>Service unavailable</title><h1>Service unavailable</h1><p>{message}.</p>",
                status=503,
            )
        response["Retry-After"] = self.RETRY_AFTER
        return response


class ReadAuditMiddleware:
    """Every read of patient data is an audit event: each GET (or HEAD) a signed-in user makes and the portal
    answers with 2xx, on any route but those screening.audit.services lists as holding none.

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
