"""The model registry: which checkpoint is the champion that predicts new images.

There is always a champion. On a fresh database migration 0008 registers the
shipped baseline (ml/weights/baseline.pt) from its sidecar, ml/weights/baseline.json,
and `ensure_champion` does the same whenever the registry has no champion, so
neither the web process nor a migration imports torch. A version whose checkpoint
cannot be loaded is marked unservable: it predicts nothing until it loads again.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from screening import dispatch
from screening.ai.inference import checkpoint_path as checkpoint_path  # re-exported: the registry's path rule
from screening.audit.services import record_event
from screening.errors import Conflict
from screening.models import ModelVersion

log = logging.getLogger(__name__)

BASELINE_CHECKPOINT = "ml/weights/baseline.pt"
BASELINE_SIDECAR = "ml/weights/baseline.json"


def champion() -> ModelVersion | None:
    """The champion; with none registered, the shipped baseline becomes champion (None only without its sidecar)."""
    current = ModelVersion.objects.filter(status=ModelVersion.Status.CHAMPION).first()
    if current is not None:
        return current
    try:
        return ensure_champion()
    except (OSError, ValueError, KeyError) as exc:
        log.error("no champion, and the shipped baseline cannot be registered: %s", exc)
        return None


def serving_champion() -> ModelVersion:
    """The champion, for callers about to queue predictions; Conflict when it cannot serve (say why)."""
    version = champion()
    if version is None:
        raise Conflict("no champion model is registered and the shipped baseline is missing")
    if not version.servable:
        raise Conflict(
            f"the champion model {version.name} cannot be loaded ({version.load_error or 'unknown reason'}); "
            "promote another version or register a repaired checkpoint"
        )
    return version


def ensure_champion() -> ModelVersion:
    """The champion, registering the shipped baseline from its sidecar when the registry has none (no torch)."""
    current = ModelVersion.objects.filter(status=ModelVersion.Status.CHAMPION).first()
    if current is not None:
        return current
    fields = baseline_fields()
    try:
        with transaction.atomic():
            version = ModelVersion.objects.filter(name=fields["name"]).first()
            if version is None:
                version = ModelVersion.objects.create(**fields)
            promote_version(version)
            record_event(action="model_promote", obj=version, detail={"automatic": True, "reason": "no champion"})
    except IntegrityError:  # another process made a champion meanwhile
        pass
    return ModelVersion.objects.get(status=ModelVersion.Status.CHAMPION)


def baseline_fields(sidecar: str | Path = BASELINE_SIDECAR) -> dict[str, Any]:
    """The shipped baseline's registry row (name, checkpoint, threshold, metrics, note), read from its sidecar."""
    path = Path(sidecar) if Path(sidecar).is_absolute() else Path(settings.BASE_DIR) / sidecar
    fields = json.loads(path.read_text())
    return {key: fields[key] for key in ("name", "checkpoint", "threshold", "metrics", "note")}


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
            record_event(action="model_servable", obj=version, detail={"checkpoint": version.checkpoint})
            if version.status == ModelVersion.Status.CHAMPION:
                dispatch.after_commit("screening.tasks.predict_waiting_images", version.pk)
        version.refresh_from_db()
    if promote:
        promote_version(version)
    return version


@transaction.atomic
def promote_version(version: ModelVersion) -> ModelVersion:
    """Make `version` the champion; the previous champion retires. Workers reload on their next task.

    Every promotion path goes through here. After the commit, images that no model
    could predict yet are queued for the new champion.
    """
    ModelVersion.objects.select_for_update().filter(status=ModelVersion.Status.CHAMPION).exclude(pk=version.pk).update(
        status=ModelVersion.Status.RETIRED
    )
    version.status = ModelVersion.Status.CHAMPION
    version.promoted_at = timezone.now()
    version.save(update_fields=["status", "promoted_at"])
    dispatch.after_commit("screening.tasks.predict_waiting_images", version.pk)
    return version


def mark_unservable(version: ModelVersion, reason: str) -> bool:
    """Record that the version's checkpoint cannot be loaded (once, audited). Returns whether it changed."""
    with transaction.atomic():
        changed = ModelVersion.objects.filter(pk=version.pk, servable=True).update(
            servable=False, load_error=reason[:2000]
        )
        if changed:
            record_event(action="model_unservable", obj=version, detail={"reason": reason[:500]})
    if changed:
        log.error("model version %s is unservable: %s", version.name, reason)
    version.refresh_from_db(fields=["servable", "load_error"])
    return bool(changed)


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
