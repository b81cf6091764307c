"""Registering a checkpoint file as a model version: its config, metrics and hash are read from the file.

Reading a checkpoint loads it with torch, so only commands and the training worker call this; the web
process never does (the registry's reads and promotions are in `registry`, free of torch).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from screening import dispatch
from screening.ai.services.registry import promote_version
from screening.audit import actions
from screening.audit.services import record_event
from screening.models import ModelVersion

log = logging.getLogger(__name__)


def describe_checkpoint(path: str | Path, *, name: str | None = None, note: str = "") -> dict[str, Any]:
    """A checkpoint's registry row, read from the file (imports torch: commands and workers only)."""
    from ml.checkpoint import file_version, load_checkpoint

    full = Path(path) if Path(path).is_absolute() else Path(settings.BASE_DIR) / path
    if full.suffix == ".json":  # an external model's manifest (ml.external): checked by loading it
        return _describe_external(full, path, name=name, note=note)
    checkpoint = load_checkpoint(full)
    return {
        "name": name or file_version(full),
        "checkpoint": str(path),
        "threshold": float(checkpoint["threshold"]),
        "metrics": {
            **(checkpoint.get("metrics") or {}),
            "operating_point": checkpoint.get("operating_point") or {},
            "training_data": checkpoint.get("training_data") or {},
            "exam_model": checkpoint.get("exam_model"),
            # per source kind: calibration, exam model and thresholds (ml.operating)
            "sources": checkpoint.get("sources") or {},
            "default_source_kind": "digital" if "digital" in (checkpoint.get("sources") or {}) else None,
        },
        "note": note,
    }


def register_checkpoint(
    path: str | Path, *, name: str | None = None, promote: bool = False, note: str = ""
) -> ModelVersion:
    """Add a checkpoint to the registry (idempotent by name); optionally make it champion.

    Reads the checkpoint's operating point and metrics, so it imports torch: call
    it from commands and workers, not from web requests. Registering an unservable
    version's name again, once its checkpoint loads, makes it servable again.
    """
    fields = describe_checkpoint(path, name=name, note=note)
    version = ModelVersion.objects.filter(name=fields["name"]).first()
    if version is None:
        try:
            with transaction.atomic():
                version = ModelVersion.objects.create(**fields)
        except IntegrityError:
            version = ModelVersion.objects.get(name=fields["name"])
    elif not version.servable and fields["checkpoint"] == version.checkpoint:
        with transaction.atomic():
            ModelVersion.objects.filter(pk=version.pk).update(servable=True, load_error="")
            record_event(action=actions.MODEL_SERVABLE, obj=version, detail={"checkpoint": version.checkpoint})
            if version.status == ModelVersion.Status.CHAMPION:
                dispatch.after_commit("screening.tasks.predict_waiting_images", version.pk)
        version.refresh_from_db()
    if promote:
        promote_version(version)
    return version


def _describe_external(full: Path, path: str | Path, *, name: str | None, note: str) -> dict[str, Any]:
    """An ONNX/TorchScript model's registry row, from its manifest (loads it: workers and commands only)."""
    from ml.external import ExternalPredictor

    predictor = ExternalPredictor(full)
    manifest = predictor.manifest
    sources = manifest.get("sources_fitted") or {}
    return {
        "name": name or f"external-{predictor.version}",
        "checkpoint": str(path),
        "threshold": float(predictor.threshold),
        "metrics": {
            "external": {k: manifest.get(k) for k in ("format", "input", "outputs", "output_scale", "sources")},
            "exam_model": manifest.get("exam_model"),
            "sources": sources,
            "default_source_kind": "digital" if "digital" in sources else None,
            "operating_point": {"source": "the model's manifest (not fitted by the portal)"},
        },
        "note": note,
    }
