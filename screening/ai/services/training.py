"""Training runs: triggering one, the one-run-at-a-time rule, and the release of runs whose worker died.

One run at a time: a run is claimed with a conditional UPDATE (queued -> running)
and the database allows one running row. A worker that dies leaves its run
`running`; `release_stuck_runs` fails it once its heartbeat is old. The run's body (which trains with torch)
is `training_run`, reached only from the training task and the `retrain` command.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from screening import dispatch
from screening.audit import actions
from screening.audit.services import record_event
from screening.errors import Conflict, PortalError
from screening.models import ModelVersion, TrainingRun

log = logging.getLogger(__name__)


# --- triggering and the one-run-at-a-time rule ----------------------------------------------------
def trigger_run(*, trigger: str = "manual", user=None, ip_address: str | None = None, enqueue: bool = True):
    """Queue a training run now (admin page, API, command). Raises Conflict while another is queued or running."""
    release_stuck_runs()
    with transaction.atomic():
        busy = TrainingRun.objects.select_for_update().filter(
            status__in=[TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING]
        )
        current = busy.order_by("id").first()
        if current is not None:
            raise Conflict(f"training run #{current.pk} is already {current.status}; wait for it to finish")
        run = TrainingRun.objects.create(triggered_by=trigger[:32])
        record_event(
            action=actions.TRAINING_TRIGGER, user=user, obj=run, ip_address=ip_address, detail={"via": trigger}
        )
        if enqueue:
            dispatch.after_commit("screening.tasks.retrain", run.pk, trigger)
    return run


def started_message(run: TrainingRun) -> str:
    """What to tell the admin who pressed "Train now", from the run as it is now: in embedded mode the run has
    already been tried in this request, and a run that failed at once (too few labels, no champion) says so
    with its reason instead of "queued". Raises PortalError (shown as an error) for a failed run."""
    run.refresh_from_db()
    if run.status == TrainingRun.Status.FAILED:
        raise PortalError(f"Training run #{run.pk} failed at once: {run.error or 'no reason was recorded'}")
    if run.status == TrainingRun.Status.SUCCEEDED:
        candidate = f": candidate {run.candidate.name} ({run.candidate.status})" if run.candidate_id else ""
        return f"Training run #{run.pk} finished{candidate}."
    if run.status == TrainingRun.Status.RUNNING:
        return f"Training run #{run.pk} started; its progress shows below."
    return f"Training run #{run.pk} queued; its progress shows below once a training worker takes it."


def release_stuck_runs(now=None) -> list[int]:
    """Fail runs whose worker died: running without a heartbeat, or queued and never started, for too long."""
    now = now or timezone.now()
    stale = float(settings.PORTAL_TRAINING_STALE_SECONDS)
    never_started = float(settings.PORTAL_TRAINING_QUEUED_STALE_SECONDS)
    released = []
    for run in TrainingRun.objects.filter(status__in=[TrainingRun.Status.RUNNING, TrainingRun.Status.QUEUED]):
        if run.status == TrainingRun.Status.RUNNING:
            beat = (run.progress or {}).get("heartbeat") or (run.started or run.created).timestamp()
            if now.timestamp() - float(beat) <= stale:
                continue
            reason = f"stuck: no progress for {now.timestamp() - float(beat):.0f} s (the worker died or hung)"
        elif (now - run.created).total_seconds() > never_started:
            reason = "never started: no training worker took the run"
        else:
            continue
        if TrainingRun.objects.filter(pk=run.pk, status=run.status).update(
            status=TrainingRun.Status.FAILED, error=reason, finished=now
        ):
            _reject_orphan_candidate(run.candidate_id, f"run #{run.pk} failed: {reason}")
            released.append(run.pk)
            log.warning("released training run %s: %s", run.pk, reason)
    return released


def _reject_orphan_candidate(version_id: int | None, reason: str) -> None:
    if version_id is not None:
        ModelVersion.objects.filter(pk=version_id, status=ModelVersion.Status.CHALLENGER).update(
            status=ModelVersion.Status.REJECTED, note=reason[:2000]
        )
