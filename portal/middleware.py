"""Response headers the portal adds to every page and API answer."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse


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
