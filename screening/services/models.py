"""The model registry: which checkpoint is the champion that predicts new images."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from ..models import ModelVersion

BASELINE_CHECKPOINT = "ml/weights/baseline.pt"


def champion() -> ModelVersion | None:
    return ModelVersion.objects.filter(status=ModelVersion.Status.CHAMPION).first()


def checkpoint_path(version: ModelVersion) -> Path:
    """A local file for the version's checkpoint (relative paths are under the project)."""
    path = Path(version.checkpoint)
    return path if path.is_absolute() else Path(settings.BASE_DIR) / path


def register_checkpoint(
    path: str | Path, *, name: str | None = None, promote: bool = False, note: str = ""
) -> ModelVersion:
    """Add a checkpoint to the registry (idempotent by name); optionally make it champion.

    Reads the checkpoint's operating point and metrics, so it imports torch: call
    it from commands and workers, not from web requests.
    """
    from ml.checkpoint import file_version, load_checkpoint

    full = Path(path) if Path(path).is_absolute() else Path(settings.BASE_DIR) / path
    checkpoint = load_checkpoint(full)
    name = name or file_version(full)
    version = ModelVersion.objects.filter(name=name).first()
    if version is None:
        try:
            with transaction.atomic():
                version = ModelVersion.objects.create(
                    name=name,
                    checkpoint=str(path),
                    threshold=float(checkpoint["threshold"]),
                    metrics={
                        **(checkpoint.get("metrics") or {}),
                        "operating_point": checkpoint.get("operating_point") or {},
                        "training_data": checkpoint.get("training_data") or {},
                    },
                    note=note,
                )
        except IntegrityError:
            version = ModelVersion.objects.get(name=name)
    if promote:
        promote_version(version)
    return version


@transaction.atomic
def promote_version(version: ModelVersion) -> ModelVersion:
    """Make `version` the champion; the previous champion retires. Workers reload on their next task."""
    ModelVersion.objects.select_for_update().filter(status=ModelVersion.Status.CHAMPION).exclude(pk=version.pk).update(
        status=ModelVersion.Status.RETIRED
    )
    version.status = ModelVersion.Status.CHAMPION
    version.promoted_at = timezone.now()
    version.save(update_fields=["status", "promoted_at"])
    return version


def ensure_champion() -> ModelVersion:
    """The champion, registering the shipped baseline as champion when the registry is empty."""
    current = champion()
    if current is not None:
        return current
    return register_checkpoint(BASELINE_CHECKPOINT, promote=True, note="shipped baseline")
