"""A reader's preferences of the reading station (today: the hanging protocol the viewer opens with)."""

from __future__ import annotations

from screening.errors import PortalError
from screening.reading.models import HangingProtocol, ReaderPreference


def set_hanging_protocol(*, user, protocol: str) -> ReaderPreference:
    """The protocol the viewer opens with for this reader, from now on, in every browser."""
    if not isinstance(protocol, str) or protocol not in HangingProtocol.values:
        known = ", ".join(HangingProtocol.values)
        raise PortalError(f"hanging_protocol must be one of {known}", field="hanging_protocol")
    preference, _ = ReaderPreference.objects.update_or_create(user=user, defaults={"hanging_protocol": protocol})
    return preference
