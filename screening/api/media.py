"""Stored pictures (renditions, previews, heatmaps, plots) as responses: the one way media leaves storage."""

from __future__ import annotations

from django.core.files.storage import default_storage
from django.http import FileResponse, Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse

PNG = {(200, "image/png"): OpenApiResponse(OpenApiTypes.BINARY, description="8-bit PNG")}
JPEG = {(200, "image/jpeg"): OpenApiResponse(OpenApiTypes.BINARY, description="8-bit greyscale JPEG")}


def stream_png(name: str) -> FileResponse:
    """Media leaves storage only through here (and `stream_jpeg`), after the view's permission check."""
    return _stream(name, "image/png")


def stream_jpeg(name: str) -> FileResponse:
    """A stored JPEG (an image's preview), as `stream_png` streams a PNG."""
    return _stream(name, "image/jpeg")


def _stream(name: str, content_type: str) -> FileResponse:
    if not name or not default_storage.exists(name):
        raise Http404("file missing")
    response = FileResponse(default_storage.open(name, "rb"), content_type=content_type)
    response["Cache-Control"] = "private, max-age=3600"
    return response
