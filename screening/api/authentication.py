"""How REST and DICOMweb clients authenticate, besides the browser's session:

- `Authorization: Token <key>`: the portal's API token (DRF), as before.
- `Authorization: Bearer <key>`: the same API token under the standard scheme (dicomweb-client's
  `--bearer-token`, OHIF, most HTTP clients). Where a site has an identity provider
  (PORTAL_OIDC_ISSUER), a bearer that is a JWT is an OIDC access token instead: its signature is checked
  against the provider's published keys (JWKS), with its issuer, audience and expiry; its username
  claim names an existing, active portal account, whose roles apply. No account is ever made from a token.
- `Authorization: Basic <user:password>`: a portal account (Orthanc's username/password, dicomweb-client's
  `--user`). Every password check goes through django-axes like every login: failures are counted and a
  locked-out account or address gets the lockout answer (portal.login_guard). A verified password is
  remembered for a few minutes (keyed by a keyed hash of the credentials and the account's password hash,
  so a changed password or a deactivated account ends it at once): a DICOMweb client sends it with every
  request, and each check would cost the password hasher's full work. A lockout applies to it too.
"""

from __future__ import annotations

import functools
import hashlib
import hmac

from axes.handlers.proxy import AxesProxyHandler
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BasicAuthentication, TokenAuthentication

_BASIC_CACHE_SECONDS = 300
# Asymmetric signatures only: never "none", never a shared-secret HMAC a client could forge with a known key.
OIDC_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]


class BearerAuthentication(TokenAuthentication):
    keyword = "Bearer"

    def authenticate_credentials(self, key):
        if settings.PORTAL_OIDC_ISSUER and key.count(".") == 2:
            return oidc_user(key), None
        return super().authenticate_credentials(key)


@functools.cache
def _jwks_client(url: str):
    import jwt

    return jwt.PyJWKClient(url, cache_keys=True, lifespan=300, timeout=10)


def oidc_user(token: str):
    """The active portal account an OIDC access token names, once its signature and claims check out."""
    import jwt

    try:
        key = _jwks_client(settings.PORTAL_OIDC_JWKS_URL).get_signing_key_from_jwt(token)
        claims = jwt.decode(
            token,
            key.key,
            algorithms=OIDC_ALGORITHMS,
            audience=settings.PORTAL_OIDC_AUDIENCE,
            issuer=settings.PORTAL_OIDC_ISSUER,
            options={"require": ["exp", "iss", "aud"]},
            leeway=30,
        )
    except jwt.PyJWKClientConnectionError:
        raise exceptions.AuthenticationFailed("the identity provider's signing keys cannot be read") from None
    except jwt.PyJWTError as exc:  # its text names the failed check (expired, audience, signature), no claims
        raise exceptions.AuthenticationFailed(f"the bearer token is not valid: {exc}") from None
    username = claims.get(settings.PORTAL_OIDC_USERNAME_CLAIM)
    user = None
    if isinstance(username, str) and username:
        user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        raise exceptions.AuthenticationFailed("no active portal account matches this identity")
    return user


def _basic_key(userid: str, password: str) -> str:
    digest = hmac.new(settings.SECRET_KEY.encode(), f"{userid}\0{password}".encode(), hashlib.sha256)
    return "auth:basic:" + digest.hexdigest()


def _seal(password_hash: str) -> str:
    """What the cache keeps of an account's password hash: a keyed hash of it, never the hash itself."""
    return hmac.new(settings.SECRET_KEY.encode(), password_hash.encode(), hashlib.sha256).hexdigest()


class GuardedBasicAuthentication(BasicAuthentication):
    """HTTP Basic with a portal account, counted by django-axes (through django.contrib.auth.authenticate)."""

    www_authenticate_realm = "portal"

    def authenticate_credentials(self, userid, password, request=None):
        key = _basic_key(userid, password)
        remembered = cache.get(key)
        # A remembered password still obeys a lockout (someone else guessing at the account or address).
        if remembered is not None and AxesProxyHandler.is_allowed(request, {"username": userid}):
            user_pk, password_hash = remembered
            user = get_user_model().objects.filter(pk=user_pk, is_active=True).first()
            if user is not None and _seal(user.password) == password_hash and user.get_username() == userid:
                return user, None
        user, auth = super().authenticate_credentials(userid, password, request)
        cache.set(key, (user.pk, _seal(user.password)), _BASIC_CACHE_SECONDS)
        return user, auth


class BearerScheme(OpenApiAuthenticationExtension):
    """How the OpenAPI document names the schemes (drf-spectacular)."""

    target_class = BearerAuthentication
    name = "bearerAuth"
    priority = 1  # before drf-spectacular's own for TokenAuthentication and its subclasses

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "the API token, or an OIDC access token"}


class BasicScheme(OpenApiAuthenticationExtension):
    target_class = GuardedBasicAuthentication
    name = "basicAuth"
    priority = 1

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "basic"}
