"""What a locked-out login gets, the same for the login page, the admin and the token endpoint.

django-axes counts the failures (settings: AXES_*). When a login is refused it flags the
request, and its middleware answers with `lockout_response`: a page for browsers, the API's
JSON error shape (HTTP 429) under /api/ and /dicomweb/ (HTTP Basic, screening.api.authentication).
"""

from __future__ import annotations

from axes.signals import user_locked_out
from django.conf import settings
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render


def lockout_message() -> str:
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    return (
        "Too many failed logins for this account or from this address. "
        f"Try again in {minutes} minutes, or ask an admin to unlock the account."
    )


def lockout_response(request: HttpRequest, original_response=None, credentials=None) -> HttpResponse:
    from screening.api.errors import error_body

    if request.path.startswith(("/api/", "/dicomweb/")):
        response = JsonResponse(error_body("locked_out", lockout_message()), status=429)
    else:
        response = render(request, "registration/locked_out.html", {"message": lockout_message()}, status=429)
    response["Retry-After"] = str(int(settings.AXES_COOLOFF_TIME.total_seconds()))
    return response


@receiver(user_locked_out)
def flag_the_django_request(sender, request, **kwargs) -> None:
    """DRF wraps Django's request, so axes flags the wrapper; its middleware reads Django's own."""
    django_request = getattr(request, "_request", None)
    if django_request is not None:
        django_request.axes_locked_out = True
        django_request.axes_credentials = getattr(request, "axes_credentials", None)
