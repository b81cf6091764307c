"""Stored pictures (renditions, heatmaps, plots) as responses: the one way media leaves storage."""

from __future__ import annotations

from django.core.files.storage import default_storage
from django.http import FileResponse, Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse

PNG = {(200, "image/png"): OpenApiResponse(OpenApiTypes.BINARY, description="8-bit PNG")}


def stream_png(name: str) -> FileResponse:
    """Media leaves storage only through here, after the view's permission check."""
    if not name or not default_storage.exists(name):
        raise Http404("file missing")
    response = FileResponse(default_storage.open(name, "rb"), content_type="image/png")
    response["Cache-Control"] = "private, max-age=3600"
    return response
