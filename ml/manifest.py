"""The manifest of an external model (ml.external), checked without torch: the web process reads it at upload.

See ml.external for the format. `check_manifest` takes the parsed JSON, `read_manifest` a file whose
model file must lie beside it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ml.config import PREPROCESS_VERSION

FORMATS = ("onnx", "torchscript")
# ml.preprocess settings a manifest may set under input.options (the defaults otherwise)
PREPROCESS_OPTIONS = ("mask_max_side", "mask_threshold_fraction", "mask_dilate_cells", "orientation_margin")
# A 4-view exam within 2 s on two CPU cores: half a second an image, preprocessing and heatmaps included.
DEFAULT_BUDGET_MS = 500.0


class ExternalModelError(ValueError):
    """A manifest or model file the portal refuses, with the reason in words."""


def parse_manifest(data: bytes | str) -> dict[str, Any]:
    """The manifest's JSON, checked (no file is looked at)."""
    try:
        manifest = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExternalModelError(f"the manifest is not JSON: {exc}") from None
    return check_manifest(manifest)


def read_manifest(path: str | Path) -> dict[str, Any]:
    """A manifest file, checked, whose model file lies beside it."""
    path = Path(path)
    try:
        manifest = parse_manifest(path.read_bytes())
    except FileNotFoundError:
        raise ExternalModelError("the manifest file does not exist") from None
    file = (path.parent / str(manifest.get("file", ""))).resolve()
    if not manifest.get("file") or not file.is_file() or path.parent.resolve() not in file.parents:
        raise ExternalModelError("file must name the model file, beside the manifest")
    return manifest


def check_manifest(manifest: Any) -> dict[str, Any]:
    """The manifest's fields checked one by one; ExternalModelError names the first wrong one."""
    if not isinstance(manifest, dict):
        raise ExternalModelError("the manifest must be a JSON object")
    if manifest.get("format") not in FORMATS:
        raise ExternalModelError(f"format must be one of {', '.join(FORMATS)}")
    size = manifest.get("input") or {}
    for key in ("height", "width"):
        if not isinstance(size.get(key), int) or not 32 <= size[key] <= 8192:
            raise ExternalModelError(f"input.{key} must be a whole number of pixels between 32 and 8192")
    if size.get("preprocess", PREPROCESS_VERSION) != PREPROCESS_VERSION:
        raise ExternalModelError(f"input.preprocess must be {PREPROCESS_VERSION!r} (the only one the portal makes)")
    outputs = manifest.get("outputs") or {}
    if not ({"patch_logits", "image_logit"} & set(outputs)):
        raise ExternalModelError("outputs must name patch_logits and/or image_logit")
    if any(not isinstance(v, int) or v < 0 for v in outputs.values()):
        raise ExternalModelError("each output must be the index of a model output")
    if manifest.get("output_scale", "logit") not in ("logit", "probability"):
        raise ExternalModelError("output_scale must be 'logit' or 'probability'")
    threshold = manifest.get("threshold", 0.5)
    if not isinstance(threshold, int | float) or not 0 < float(threshold) < 1:
        raise ExternalModelError("threshold must be a probability between 0 and 1")
    if not isinstance(manifest.get("file"), str) or not manifest["file"] or "/" in manifest["file"]:
        raise ExternalModelError("file must name the model file, beside the manifest")
    return manifest
