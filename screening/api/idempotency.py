"""The Idempotency-Key header on POSTs: a retried request gets the first answer, not a second effect.

Successful responses are kept in the cache (Redis in production) for 24 hours per
user and key. The same key on another endpoint is a 409; so is a retry while the
first request is still running. Errors are not kept, so a failed request can be retried.
"""

from __future__ import annotations

import functools
import hashlib

from django.core.cache import cache
from rest_framework.response import Response

from screening.errors import Conflict, PortalError

TTL = 24 * 3600
HEADER = "HTTP_IDEMPOTENCY_KEY"


def idempotent(handler):
    @functools.wraps(handler)
    def wrapper(self, request, *args, **kwargs):
        key = request.META.get(HEADER, "").strip()
        if not key:
            return handler(self, request, *args, **kwargs)
        if len(key) > 255:
            raise PortalError("Idempotency-Key must be at most 255 characters", field="Idempotency-Key")
        digest = hashlib.sha256(f"{request.user.pk}:{key}".encode()).hexdigest()
        stored_key, lock_key = f"idem:{digest}", f"idem-lock:{digest}"
        stored = cache.get(stored_key)
        if stored is not None:
            if stored["path"] != request.path:
                raise Conflict("this Idempotency-Key was already used for another request")
            response = Response(stored["data"], status=stored["status"])
            response["Idempotent-Replayed"] = "true"
            return response
        if not cache.add(lock_key, 1, timeout=300):
            raise Conflict("a request with this Idempotency-Key is still being processed")
        try:
            response = handler(self, request, *args, **kwargs)
            if 200 <= response.status_code < 300:
                cache.set(
                    stored_key, {"path": request.path, "status": response.status_code, "data": response.data}, TTL
                )
            return response
        finally:
            cache.delete(lock_key)

    return wrapper
