"""Admins' registry actions: promote a version by hand, roll back to the previous champion, move a version's
operating point, re-predict. Every change writes its audit event. Free of torch: the pages and the API call
these; scoring and the automatic promotion rule are `evaluation` (training worker).
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import Q

from screening.ai.services.predictions import rerun_studies
from screening.ai.services.registry import champion, checkpoint_path, promote_version
from screening.audit import actions
from screening.audit.services import record_event
from screening.errors import Conflict, PortalError
from screening.models import ModelVersion, Study
from screening.reading.selectors import UNREAD

# --- scoring on the locked validation set and the promotion rule -----------------------------------


def repredict_unread(version: ModelVersion) -> int:
    """Queue predictions of every unread study's images by `version`; earlier predictions keep theirs."""
    return len(rerun_studies(Study.objects.filter(status__in=UNREAD), version=version))


# --- manual promotion, rollback, the operating point and re-prediction (admins) ---------------------


def _require_checkpoint(version: ModelVersion) -> None:
    if not checkpoint_path(version).exists():
        raise PortalError(f"the checkpoint file of {version.name} is missing; it cannot serve", code="missing_file")


@transaction.atomic
def promote(*, version: ModelVersion, user=None, ip_address: str | None = None, repredict: bool = False):
    """Make a version the champion by hand (any status but champion); the champion retires."""
    version = ModelVersion.objects.select_for_update().get(pk=version.pk)
    if version.status == ModelVersion.Status.CHAMPION:
        raise Conflict(f"{version.name} is already the champion")
    _require_checkpoint(version)
    previous = champion()
    promote_version(version)
    record_event(
        action=actions.MODEL_PROMOTE,
        user=user,
        obj=version,
        ip_address=ip_address,
        detail={"automatic": False, "previous": previous.name if previous else None},
    )
    if repredict:
        transaction.on_commit(lambda: repredict_unread(version))
    return version


@transaction.atomic
def rollback(*, user=None, ip_address: str | None = None, repredict: bool = False) -> ModelVersion:
    """The previous champion serves again; the current one retires."""
    current = ModelVersion.objects.select_for_update().filter(status=ModelVersion.Status.CHAMPION).first()
    if current is None:
        raise Conflict("there is no champion to roll back")
    previous = (
        ModelVersion.objects.filter(status=ModelVersion.Status.RETIRED, promoted_at__isnull=False)
        .exclude(pk=current.pk)
        .order_by("-promoted_at", "-pk")
        .first()
    )
    if previous is None:
        raise Conflict("no earlier champion to roll back to")
    _require_checkpoint(previous)
    promote_version(previous)
    record_event(
        action=actions.MODEL_ROLLBACK, user=user, obj=previous, ip_address=ip_address, detail={"retired": current.name}
    )
    if repredict:
        transaction.on_commit(lambda: repredict_unread(previous))
    return previous


@transaction.atomic
def set_operating_point(*, version: ModelVersion, threshold: float, user=None, ip_address: str | None = None):
    """Move a version's breast-level threshold (of its default source kind); the studies it scored with that
    threshold are flagged again: an exam is flagged exactly when one of its breasts reaches it."""
    try:
        threshold = float(threshold)
    except (TypeError, ValueError):
        raise PortalError("the threshold must be a number", field="threshold") from None
    if not 0.0 < threshold < 1.0:
        raise PortalError("the threshold must be between 0 and 1", field="threshold")
    version = ModelVersion.objects.select_for_update().get(pk=version.pk)
    old = version.threshold
    version.threshold = threshold
    version.save(update_fields=["threshold"])
    default_kind = (version.metrics or {}).get("default_source_kind") or "digital"
    scored = Study.objects.filter(exam_model=version, source_kind__in=["", default_kind])
    scored.update(exam_flag=False)
    scored.filter(Q(score_left__gte=threshold) | Q(score_right__gte=threshold)).update(exam_flag=True)
    record_event(
        action=actions.MODEL_THRESHOLD,
        user=user,
        obj=version,
        ip_address=ip_address,
        detail={"from": old, "to": threshold},
    )
    return version


@transaction.atomic
def repredict(*, version: ModelVersion, user=None, ip_address: str | None = None) -> int:
    """Re-predict every unread study with `version` (queued after the commit); returns how many images."""
    version = ModelVersion.objects.select_for_update().get(pk=version.pk)
    if not version.servable:
        raise PortalError(f"{version.name} cannot serve: {version.load_error}", code="unservable")
    _require_checkpoint(version)
    queued = repredict_unread(version)
    record_event(
        action=actions.MODEL_REPREDICT, user=user, obj=version, ip_address=ip_address, detail={"images": queued}
    )
    return queued
