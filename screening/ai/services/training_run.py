"""A training run's body, in the training worker: claim the run, fit a candidate (or check an external
model), score it against the champion on the locked pool, promote it only if it is not worse.

A run trains a candidate on the training pool (fine-tuning the champion, or from
scratch) with a fixed seed (PORTAL_TRAINING_SEED), then hands it to
`evaluation`, which scores the candidate and the champion on the locked
pool and promotes the candidate only if it is not worse. Anything that goes wrong
fails the run with its reason and leaves the champion serving.

Only the training task and the `retrain` command reach this module (it trains with torch); triggering a run,
the one-run-at-a-time rule and the release of stuck runs are in `training`, which the web process imports.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from ml import metrics as ml_metrics
from ml.manifest import ExternalModelError
from screening.ai.labels import feature_cache_dir, has_new_labels, need_both_classes, to_examples
from screening.ai.services.checkpoints import register_checkpoint
from screening.ai.services.evaluation import apply_decision, challenge
from screening.ai.services.external_models import EXTERNAL
from screening.ai.services.registry import champion, checkpoint_path
from screening.ai.services.splits import current_snapshot
from screening.ai.services.training import _reject_orphan_candidate, release_stuck_runs
from screening.errors import PortalError
from screening.models import TrainingRun

log = logging.getLogger(__name__)

# --- triggering and the one-run-at-a-time rule ----------------------------------------------------


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
        if TrainingRun.objects.filter(pk=run_id, triggered_by=EXTERNAL).exists():
            _register_external(run_id)
        else:
            _train(run_id)
    except Exception as exc:
        _fail(run_id, exc)
    return run_id


def _register_external(run_id: int) -> None:
    """An uploaded ONNX/TorchScript model: checked, registered and challenged like a nightly candidate."""
    progress = _Progress(run_id, time.monotonic() + _soft_time_limit())
    decision = run_external(run_id, progress)
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


def run_external(run_id: int, progress) -> None:
    """The worker's half (imports torch through ml.external): validate, register, challenge, decide."""
    from ml.external import validate

    run = TrainingRun.objects.get(pk=run_id)
    spec = run.data_summary["external"]
    manifest = Path(spec["manifest"])
    progress({"stage": "checking the model"})
    try:
        _, report = validate(manifest, budget_ms=float(getattr(settings, "PORTAL_EXTERNAL_BUDGET_MS", 500.0)))
    except ExternalModelError as exc:
        shutil.rmtree(manifest.parent, ignore_errors=True)
        raise PortalError(f"the model was refused: {exc}") from None
    progress({"stage": "registering", "check": report})
    digest, summary, labels = current_snapshot()
    locked = [lab for lab in labels if lab.split == "validation"]
    need_both_classes(locked, "locked validation")
    candidate = register_checkpoint(manifest.resolve(), name=spec["name"], note=spec.get("note") or "external model")
    TrainingRun.objects.filter(pk=run_id).update(
        candidate=candidate, snapshot_hash=digest, data_summary={**run.data_summary, **summary, "check": report}
    )
    progress({"stage": "evaluating"})
    decision = challenge(
        candidate, examples=to_examples(locked), snapshot_hash=digest, run_id=run_id, progress=progress
    )
    with transaction.atomic():
        apply_decision(candidate, decision, run_id=run_id)
    return decision
