from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from portal import net

from ..models import AuditEvent, Study


def client_ip(request: HttpRequest | None) -> str | None:
    """The client's address, the one the login guard counts (X-Forwarded-For only from trusted proxies)."""
    if request is None:
        return None
    return net.client_ip(request)


def record_event(
    *,
    action: str,
    user=None,
    study: Study | None = None,
    obj: Any = None,
    ip_address: str | None = None,
    detail: dict | None = None,
) -> AuditEvent:
    """Append one audit event: who (user), when (now), what (action, object), from where (IP)."""
    authenticated = user is not None and getattr(user, "is_authenticated", False)
    return AuditEvent.objects.create(
        user=user if authenticated else None,
        username=user.get_username() if authenticated else "",
        action=action,
        study=study,
        object_type=type(obj).__name__.lower() if obj is not None else "",
        object_id=str(obj.pk) if obj is not None else "",
        ip_address=ip_address,
        detail=detail or {},
    )
