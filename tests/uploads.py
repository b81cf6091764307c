"""Uploading through the REST API in tests: one helper for every test module."""

from __future__ import annotations

import io

import numpy as np
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image as PILImage

URL = "/api/v1/images/"


def upload(client, content: bytes, name: str = "image.dcm", **fields):
    """POST one file (and form fields) to the image upload endpoint as `client`."""
    return client.post(URL, {"file": SimpleUploadedFile(name, content), **fields}, format="multipart")


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()
