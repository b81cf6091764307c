"""Logging in and out, and the page each role lands on."""

from __future__ import annotations

from django.contrib.auth.views import LoginView, LogoutView
from django.urls import reverse

from screening.accounts.roles import can_read_cases, can_upload


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


class PortalLogoutView(LogoutView):
    """Logging out also clears what the portal kept in this browser: the next-case prefetch holds a case's
    DICOM instances in Cache Storage, which must not outlive the session (`Clear-Site-Data`)."""

    def post(self, request, *args, **kwargs):
        response = super().post(request, *args, **kwargs)
        response["Clear-Site-Data"] = '"cache", "storage"'
        return response
