"""The API token endpoint: a username and password for a token, guarded like every login."""

from __future__ import annotations

from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.permissions import AllowAny


class TokenView(ObtainAuthToken):
    """Exchange a username and password for an API token.

    Guarded against guessing like every login (django-axes, see portal.login_guard): a locked-out
    account or address gets a 429 in the API's error shape.
    """

    permission_classes = [AllowAny]
    throttle_classes = []
