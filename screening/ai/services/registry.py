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
from screening.audit import actions
from screening.audit.services import record_event
from screening.errors import Conflict
from screening.models import ModelVersion

log = logging.getLogger(__name__)

BASELINE_CHECKPOINT = "ml/weights/baseline.pt"
BASELINE_SIDECAR = "ml/weights/baseline.json"


def checkpoint_path(version: ModelVersion) -> Path:
    """A local file for the version's checkpoint (relative paths are under the project)."""
    path = Path(version.checkpoint)
    return path if path.is_absolute() else Path(settings.BASE_DIR) / path


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
            record_event(action=actions.MODEL_PROMOTE, obj=version, detail={"automatic": True, "reason": "no champion"})
    except IntegrityError:  # another process made a champion meanwhile
        pass
    return ModelVersion.objects.get(status=ModelVersion.Status.CHAMPION)


def baseline_fields(sidecar: str | Path = BASELINE_SIDECAR) -> dict[str, Any]:
    """The shipped baseline's registry row (name, checkpoint, threshold, metrics, note), read from its sidecar."""
    path = Path(sidecar) if Path(sidecar).is_absolute() else Path(settings.BASE_DIR) / sidecar
    fields = json.loads(path.read_text())
    return {key: fields[key] for key in ("name", "checkpoint", "threshold", "metrics", "note")}


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
            record_event(action=actions.MODEL_UNSERVABLE, obj=version, detail={"reason": reason[:500]})
    if changed:
        log.error("model version %s is unservable: %s", version.name, reason)
    version.refresh_from_db(fields=["servable", "load_error"])
    return bool(changed)
