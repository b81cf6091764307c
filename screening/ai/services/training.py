"""Training runs: triggering one, the one-run-at-a-time rule, and a run's body in the training worker.

A run trains a candidate on the training pool (fine-tuning the champion, or from
scratch) with a fixed seed (PORTAL_TRAINING_SEED), then hands it to
services.promotion, which scores the candidate and the champion on the locked
pool and promotes the candidate only if it is not worse. Anything that goes wrong
fails the run with its reason and leaves the champion serving.

One run at a time: a run is claimed with a conditional UPDATE (queued -> running)
and the database allows one running row. A worker that dies leaves its run
`running`; `release_stuck_runs` fails it once its heartbeat is old.

torch is imported only inside the functions that train, so the web process can
import this module to trigger a run.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from ml import metrics as ml_metrics
from screening import dispatch
from screening.ai.services import external_models
from screening.ai.services.labels import (
    current_snapshot,
    feature_cache_dir,
    has_new_labels,
    need_both_classes,
    to_examples,
)
from screening.ai.services.promotion import apply_decision, challenge
from screening.ai.services.registry import champion, checkpoint_path, register_checkpoint
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
        record_event(action="training_trigger", user=user, obj=run, ip_address=ip_address, detail={"via": trigger})
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


def _claim(run_id: int) -> bool:
    now = timezone.now()
    try:
        with transaction.atomic():
            return bool(
                TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.QUEUED).update(
                    status=TrainingRun.Status.RUNNING,
                    started=now,
                    progress={"stage": "starting", "heartbeat": time.time()},
                )
            )
    except IntegrityError:  # the partial unique constraint: another run is running
        other = TrainingRun.objects.filter(status=TrainingRun.Status.RUNNING).first()
        TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.QUEUED).update(
            status=TrainingRun.Status.FAILED,
            error=f"another training run (#{other.pk if other else '?'}) was running",
            finished=now,
        )
        return False


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


# --- a run (in the training worker) ----------------------------------------------------------------


class RunAborted(Exception):
    """The run was released (taken as stuck) or ran past its time limit while this worker was busy."""


@dataclass
class _Progress:
    """Writes progress (and a heartbeat) to the run row; aborts when the run is no longer ours."""

    run_id: int
    deadline: float
    state: dict[str, Any] = field(default_factory=dict)
    last_write: float = 0.0

    def __call__(self, record: dict[str, Any]) -> None:
        if time.monotonic() > self.deadline:
            raise RunAborted(f"timed out after {_soft_time_limit():.0f} s")
        record = {k: v for k, v in record.items() if not (isinstance(v, float) and np.isnan(v))}
        if record.get("stage") == "train":
            history = self.state.setdefault("history", [])
            history.append({k: record[k] for k in ("epoch", "loss", "val_auc") if k in record})
        self.state.update(record)
        now = time.monotonic()
        if record.get("stage") == "features" and now - self.last_write < 1.0 and record["done"] < record["total"]:
            return  # one write a second is plenty for a progress bar
        self.last_write = now
        self.state["heartbeat"] = time.time()
        if not TrainingRun.objects.filter(pk=self.run_id, status=TrainingRun.Status.RUNNING).update(
            progress=self.state
        ):
            raise RunAborted("the run was released as stuck while it was still working")


def _soft_time_limit() -> float:
    return float(settings.PORTAL_TRAINING_SOFT_TIME_LIMIT)


def run_training(run_id: int | None = None, trigger: str = "schedule") -> int | None:
    """The training task's body. Without run_id (the nightly schedule) a run starts only for new labels.

    Returns the run id, or None when there was nothing to do (no new labels, the
    run already claimed by another delivery, another run busy).
    """
    release_stuck_runs()
    if run_id is None:
        if TrainingRun.objects.filter(status__in=[TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING]).exists():
            log.info("a training run is already queued or running; the %s trigger is skipped", trigger)
            return None
        digest, _, _ = current_snapshot()
        if trigger == "schedule" and not has_new_labels(digest):
            log.info("no new labels since the last successful run; nothing to train")
            return None
        run_id = TrainingRun.objects.create(triggered_by=trigger[:32]).pk
    if not _claim(run_id):
        return None
    try:
        if TrainingRun.objects.filter(pk=run_id, triggered_by=external_models.EXTERNAL).exists():
            _register_external(run_id)
        else:
            _train(run_id)
    except Exception as exc:
        _fail(run_id, exc)
    return run_id


def _register_external(run_id: int) -> None:
    """An uploaded ONNX/TorchScript model: checked, registered and challenged like a nightly candidate."""
    progress = _Progress(run_id, time.monotonic() + _soft_time_limit())
    decision = external_models.run_external(run_id, progress)
    _finish(run_id, progress, decision)


def _finish(run_id: int, progress: _Progress, decision: dict[str, Any]) -> None:
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().get(pk=run_id)
        if run.status != TrainingRun.Status.RUNNING:
            raise RunAborted("the run was released as stuck before it finished")
        run.status = TrainingRun.Status.SUCCEEDED
        run.finished = timezone.now()
        run.progress = {**progress.state, "stage": "done", "decision": decision["outcome"]}
        run.save(update_fields=["status", "finished", "progress"])


def _reason(exc: BaseException) -> str:
    try:
        import torch

        oom = isinstance(exc, MemoryError | torch.OutOfMemoryError)
    except ImportError:  # pragma: no cover - torch is always there in a training worker
        oom = isinstance(exc, MemoryError)
    if oom:
        return f"out of memory while training: {exc}"[:2000]
    if isinstance(exc, PortalError | RunAborted):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"[:2000]


def _fail(run_id: int, exc: BaseException) -> None:
    reason = _reason(exc)
    if isinstance(exc, PortalError | RunAborted):
        log.warning("training run %s failed: %s", run_id, reason)
    else:
        log.exception("training run %s failed", run_id)
    run = TrainingRun.objects.get(pk=run_id)
    TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.RUNNING).update(
        status=TrainingRun.Status.FAILED,
        error=reason,
        finished=timezone.now(),
        progress={**(run.progress or {}), "stage": "failed"},
    )
    _reject_orphan_candidate(run.candidate_id, f"run #{run_id} failed: {reason}")


def training_config(base: dict[str, Any] | None):
    """The champion's config (or the default) with PORTAL_TRAINING_OVERRIDES applied."""
    from ml.config import ModelConfig

    values = dict(base or ModelConfig().to_dict())
    values.update(settings.PORTAL_TRAINING_OVERRIDES)
    return ModelConfig.from_dict(values)


def _train(run_id: int) -> None:
    from ml.checkpoint import load_checkpoint, save_checkpoint
    from ml.train import fit

    progress = _Progress(run_id, time.monotonic() + _soft_time_limit())
    progress({"stage": "snapshot"})
    digest, summary, labels = current_snapshot()
    TrainingRun.objects.filter(pk=run_id).update(snapshot_hash=digest, data_summary=summary)
    train = [lab for lab in labels if lab.split == "train"]
    locked = [lab for lab in labels if lab.split == "validation"]
    need_both_classes(train, "training")
    need_both_classes(locked, "locked validation")
    current = champion()
    base = load_checkpoint(checkpoint_path(current)) if current is not None else None
    from_scratch = settings.PORTAL_TRAINING_FROM_SCRATCH or base is None
    config = training_config(base["config"] if base else None)
    seed = settings.PORTAL_TRAINING_SEED
    summary.update(
        {
            "champion": current.name if current else None,
            "init": "scratch" if from_scratch else f"fine-tune {current.name}",
            "seed": seed,
            "config": {k: v for k, v in config.to_dict().items() if k not in ("norm_mean", "norm_std", "extra")},
        }
    )
    TrainingRun.objects.filter(pk=run_id).update(snapshot_hash=digest, data_summary=summary)

    train_examples = to_examples(train)
    checkpoint = fit(
        train_examples,
        None,  # fit keeps its own early-stopping split inside the training pool: the locked set stays unseen
        config,
        init_checkpoint=None if from_scratch else base,
        progress=progress,
        seed=seed,
        cache_dir=feature_cache_dir() if config.freeze_backbone else None,
        command=f"portal training run #{run_id}",
    )
    progress({"stage": "operating point"})
    _widen_operating_point(checkpoint, train_examples, config, seed)
    checkpoint["training_data"] = {**checkpoint["training_data"], "snapshot_hash": digest, "run": run_id}
    progress({"stage": "saving"})
    # Inference workers load the checkpoint by path: by default it goes beside the media, which
    # every worker shares (docker-compose mounts it in each container).
    folder = Path(getattr(settings, "PORTAL_MODEL_DIR", Path(settings.MEDIA_ROOT) / "models"))
    path = save_checkpoint(checkpoint, folder / f"run-{run_id}-{digest[:8]}.pt")
    try:
        candidate = register_checkpoint(path.resolve(), note=f"trained by run #{run_id}")
    except Exception:
        path.unlink(missing_ok=True)
        raise
    TrainingRun.objects.filter(pk=run_id).update(candidate=candidate)
    progress({"stage": "evaluating"})
    decision = challenge(
        candidate, examples=to_examples(locked), snapshot_hash=digest, run_id=run_id, progress=progress
    )
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().get(pk=run_id)
        if run.status != TrainingRun.Status.RUNNING:
            raise RunAborted("the run was released as stuck before it finished")
        apply_decision(candidate, decision, run_id=run_id)
        run.status = TrainingRun.Status.SUCCEEDED
        run.finished = timezone.now()
        run.progress = {**progress.state, "stage": "done", "decision": decision["outcome"]}
        run.save(update_fields=["status", "finished", "progress"])


def _widen_operating_point(checkpoint: dict[str, Any], examples, config, seed: int) -> None:
    """The threshold fit() chose, widened for unseen women (ml.metrics.widen_threshold), on its early-stopping split."""
    from ml.data import patient_split
    from ml.evaluate import predict_examples
    from ml.inference import Predictor

    _, inner = patient_split(examples, config.val_fraction, seed)
    predictor = Predictor.from_checkpoint(checkpoint, device=settings.PORTAL_TRAINING_DEVICE or "cpu")
    probs = predictor.calibrated(predict_examples(predictor, inner, cache_dir=feature_cache_dir()))
    labels = np.array([ex.label for ex in inner])
    threshold = float(checkpoint["threshold"])
    widened = ml_metrics.widen_threshold(labels, probs, threshold)
    if widened == threshold:
        return
    checkpoint["threshold"] = widened
    checkpoint["operating_point"] = {
        **checkpoint["operating_point"],
        "fit_threshold": threshold,
        "threshold_rule": "midway in logits between the last abnormal caught and the next normal below it",
    }
