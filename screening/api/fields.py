"""What serializers of every sub-domain share: URLs with an id, the viewer's blinding to the AI."""

from __future__ import annotations

from functools import cache

from django.urls import reverse
from rest_framework import serializers

from screening.blinding import AIVisibility, ai_visibility


@cache
def _url_pattern(name: str) -> str:
    """A URL with one id, as a format string: reversed once, not once per row of a 50-row page."""
    return reverse(name, args=[0]).replace("/0/", "/{}/")


def url_with_id(name: str, pk: int) -> str:
    return _url_pattern(name).format(int(pk))


def _viewer(serializer: serializers.Serializer):
    request = serializer.context.get("request")
    return request.user if request is not None else None


def visibility_of(serializer: serializers.Serializer) -> AIVisibility:
    """The viewer's blinding to the AI, computed once per response (kept in the shared context)."""
    found = serializer.context.get("ai_visibility")
    if found is None:
        found = ai_visibility(_viewer(serializer))
        if isinstance(serializer.context, dict):
            serializer.context["ai_visibility"] = found
    return found
