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
