"""The client's address, trusting X-Forwarded-For only from configured proxies.

Anyone can send an X-Forwarded-For header, so it says nothing unless the peer
that sent it is one of our own reverse proxies (PORTAL_TRUSTED_PROXIES). Each
trusted proxy appends the address it received the request from, so the client
is the right-most entry that is not itself a trusted proxy; entries further
left were written by the client and are ignored. The login guard (django-axes)
and the audit trail both take the address from here.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _trusted(values: tuple[str, ...]) -> tuple[Network, ...]:
    # settings.py has checked each value (portal.env.env_networks)
    return tuple(ipaddress.ip_network(value, strict=False) for value in values)


def _address(value: str) -> Address | None:
    """An address as proxies write it: bare, '[v6]:port' or 'v4:port'."""
    value = value.strip()
    if value.startswith("[") and "]" in value:
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:
        value = value.split(":")[0]
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def _is_trusted(address: Address | None, networks: tuple[Network, ...]) -> bool:
    return address is not None and any(address in network for network in networks)


def client_ip(request: HttpRequest) -> str | None:
    """REMOTE_ADDR, or behind trusted proxies the right-most forwarded address that is not one of them."""
    remote = request.META.get("REMOTE_ADDR") or None
    networks = _trusted(tuple(settings.PORTAL_TRUSTED_PROXIES))
    if not networks or not _is_trusted(_address(remote or ""), networks):
        return remote
    hops = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            # A trusted proxy wrote something that is no address: do not guess past it.
            return remote
        if not _is_trusted(address, networks):
            return str(address)
    return remote
