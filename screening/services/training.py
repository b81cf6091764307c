"""Learning from radiologists: labels, the locked validation pool, training runs, promotion and rollback.

The loop: every image of a study with a submitted review is a label (the latest
review version wins; its findings become localisation hints). Each woman is put
in the training pool or the locked validation pool once, when first labelled,
stratified by label; the locked pool never enters training. A run trains a
candidate on the training pool (fine-tuning the champion, or from scratch), then
scores the candidate and the champion on the locked pool and promotes the
candidate only if it is not worse (`decide`). Anything that goes wrong fails the
run with its reason and leaves the champion serving.

One run at a time: a run is claimed with a conditional UPDATE (queued -> running)
and the database allows one running row. A worker that dies leaves its run
`running`; `release_stuck_runs` fails it once its heartbeat is old.

torch is imported only inside the functions that train or score, so the web
process can import this module for triggering, promotion and the registry page.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from ml import metrics as ml_metrics

from ..errors import Conflict, PortalError
from ..models import Finding, Image, ModelVersion, Patient, Prediction, Review, Study, TrainingRun
from .audit import record_event
from .models import champion, checkpoint_path, promote_version, register_checkpoint
from .predictions import rerun_studies

log = logging.getLogger(__name__)

# A finding box covering at least this share of its image marks the breast abnormal
# without a position (diffuse calcifications): no localisation hint.
DIFFUSE_AREA_SHARE = 0.5
UNREAD = [Study.Status.NEW, Study.Status.PREDICTED, Study.Status.IN_REVIEW]


def _setting(name: str, default):
    return getattr(settings, name, default)


def validation_fraction() -> float:
    value = float(_setting("PORTAL_VALIDATION_FRACTION", 0.2))
    if not 0.0 < value < 1.0:
        raise PortalError(f"PORTAL_VALIDATION_FRACTION must be between 0 and 1, got {value}")
    return value


# --- labels --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Label:
    """One training example as the database sees it."""

    image_id: int
    patient_pk: int
    patient_id: str
    laterality: str
    label: int  # 1 abnormal, 0 normal
    findings: tuple[tuple[float, float, float], ...]  # (x, y, radius) in original pixels
    review_id: int
    split: str = ""

    def key(self) -> list:
        return [self.image_id, self.label, [list(f) for f in self.findings], self.split]


def _latest_reviews():
    newest = Review.objects.filter(study=OuterRef("study")).order_by("-version").values("version")[:1]
    return Review.objects.filter(version=Subquery(newest))


def _hint(finding: Finding, image: Image) -> tuple[float, float, float] | None:
    """A finding box as (centre x, centre y, radius); None for a box that covers most of the image."""
    if finding.width * finding.height >= DIFFUSE_AREA_SHARE * image.rows * image.columns:
        return None
    return (finding.x + finding.width / 2, finding.y + finding.height / 2, max(finding.width, finding.height) / 2)


def collect_labels() -> list[Label]:
    """Every image of a study with a submitted review, labelled by the study's latest review.

    A normal decision labels every image normal. An abnormal decision labels the
    breasts that carry a finding abnormal and the other breast normal; with no
    finding marked at all, every image of the study is abnormal. Images the model
    could not read (status failed) are left out.
    """
    reviews = {r.study_id: r for r in _latest_reviews().only("id", "study_id", "decision")}
    findings: dict[int, list[Finding]] = {}
    for f in Finding.objects.filter(review_id__in=[r.pk for r in reviews.values()]).order_by("id"):
        findings.setdefault(f.review_id, []).append(f)
    images = (
        Image.objects.filter(study_id__in=list(reviews))
        .exclude(status=Image.Status.FAILED)
        .select_related("study__patient")
        .order_by("id")
    )
    labels = []
    for image in images:
        review = reviews[image.study_id]
        marked = findings.get(review.pk, [])
        abnormal_sides = {f.laterality for f in marked}
        if review.decision != Review.Decision.ABNORMAL:
            label = 0
        elif not abnormal_sides:
            label = 1
        else:
            label = int(image.laterality in abnormal_sides)
        hints = tuple(h for f in marked if f.image_id == image.pk and (h := _hint(f, image)) is not None)
        patient = image.study.patient
        labels.append(
            Label(
                image_id=image.pk,
                patient_pk=patient.pk,
                patient_id=patient.patient_id,
                laterality=image.laterality,
                label=label,
                findings=hints if label else (),
                review_id=review.pk,
                split=patient.split,
            )
        )
    return labels


def _order_key(patient_id: str) -> str:
    # A fixed pseudo-random order, so which women go to validation does not depend on upload order.
    return hashlib.sha256(patient_id.encode()).hexdigest()


def assign_splits(labels: Iterable[Label] | None = None) -> dict[str, int]:
    """Put each labelled woman without a pool into training or locked validation, once, stratified.

    Women are stratified by whether any of their images is abnormal; within each
    stratum a newcomer goes to validation while that keeps the stratum's validation
    share at or below PORTAL_VALIDATION_FRACTION. A woman's pool never changes.
    """
    labels = list(collect_labels() if labels is None else labels)
    fraction = validation_fraction()
    abnormal: dict[int, bool] = {}
    names: dict[int, str] = {}
    for lab in labels:
        abnormal[lab.patient_pk] = abnormal.get(lab.patient_pk, False) or bool(lab.label)
        names[lab.patient_pk] = lab.patient_id
    pools = dict(Patient.objects.filter(pk__in=list(abnormal)).values_list("pk", "split"))
    totals = {True: 0, False: 0}
    in_validation = {True: 0, False: 0}
    for pk, split in pools.items():
        if split:
            totals[abnormal[pk]] += 1
            in_validation[abnormal[pk]] += split == "validation"
    assigned = {"train": 0, "validation": 0}
    for pk in sorted((pk for pk, split in pools.items() if not split), key=lambda pk: _order_key(names[pk])):
        stratum = abnormal[pk]
        totals[stratum] += 1
        split = "validation" if in_validation[stratum] + 1 <= fraction * totals[stratum] + 1e-9 else "train"
        if Patient.objects.filter(pk=pk, split="").update(split=split):
            in_validation[stratum] += split == "validation"
            assigned[split] += 1
    return assigned


def _counts(labels: list[Label]) -> dict[str, int]:
    return {
        "images": len(labels),
        "women": len({lab.patient_pk for lab in labels}),
        "abnormal": sum(lab.label for lab in labels),
        "normal": sum(1 - lab.label for lab in labels),
        "with_findings": sum(1 for lab in labels if lab.findings),
    }


def snapshot(labels: list[Label]) -> tuple[str, dict[str, Any]]:
    """The exact data of a run: a SHA-256 over (image, label, hints, pool) and the list itself."""
    items = sorted(lab.key() for lab in labels)
    digest = hashlib.sha256(json.dumps(items, separators=(",", ":")).encode()).hexdigest()
    summary = {
        "train": _counts([lab for lab in labels if lab.split == "train"]),
        "validation": _counts([lab for lab in labels if lab.split == "validation"]),
        "validation_fraction": validation_fraction(),
        # [image id, label, [[x, y, radius], ...], pool]: enough to rebuild the run's data
        "images": items,
    }
    return digest, summary


EMPTY_SNAPSHOT = hashlib.sha256(b"[]").hexdigest()


def current_snapshot() -> tuple[str, dict[str, Any], list[Label]]:
    """Assign pools to newly labelled women, then snapshot every label."""
    labels = collect_labels()
    if any(not lab.split for lab in labels):
        assign_splits(labels)
        labels = collect_labels()
    digest, summary = snapshot(labels)
    return digest, summary, labels


NOT_ENOUGH_LABELS = "needs normal and abnormal images"


def has_new_labels(digest: str) -> bool:
    """True when there are labels and no run has used exactly this snapshot.

    A run that failed on this snapshot for another reason (a crash, a time-out) does
    not count: the nightly schedule tries the same labels again.
    """
    runs = TrainingRun.objects.filter(snapshot_hash=digest)
    return digest != EMPTY_SNAPSHOT and not (
        runs.filter(status=TrainingRun.Status.SUCCEEDED).exists()
        or runs.filter(status=TrainingRun.Status.FAILED, error__contains=NOT_ENOUGH_LABELS).exists()
    )


# --- seeding labels from a labelled folder (mini-MIAS format) -----------------------------------------

SEED_USERNAME = "seed-labels"
FINDING_TYPES = {
    "CALC": Finding.Type.CALCIFICATION,
    "CIRC": Finding.Type.MASS,
    "SPIC": Finding.Type.MASS,
    "MISC": Finding.Type.MASS,
    "ARCH": Finding.Type.DISTORTION,
    "ASYM": Finding.Type.ASYMMETRY,
}


def seed_labels(
    images_dir: Path, labels_csv: Path, findings_csv: Path | None = None, *, patient_ids: Iterable[str] | None = None
) -> dict[str, int]:
    """Import a labelled folder and record its labels as reviews by a system user, one per woman's study.

    images.csv (image_id, patient_id, laterality, view, label) and findings.csv
    (image_id, abnormality, x, y, radius; origin top-left) as in ../shared/data/mias.
    A finding becomes a box around its circle; an abnormal image without a position
    gets a whole-image box (abnormal breast, no localisation hint). Studies that
    already have a review are left alone, so running it twice changes nothing.
    """
    import csv

    from django.contrib.auth import get_user_model

    from .ingest import ingest_file
    from .reviews import FindingInput, review_submit

    with open(labels_csv, newline="") as fh:
        rows = [r for r in csv.DictReader(fh)]
    wanted = set(patient_ids) if patient_ids is not None else None
    rows = [r for r in rows if wanted is None or r["patient_id"].strip() in wanted]
    circles: dict[str, list[dict[str, str]]] = {}
    if findings_csv is not None and Path(findings_csv).exists():
        with open(findings_csv, newline="") as fh:
            for r in csv.DictReader(fh):
                circles.setdefault(r["image_id"].strip(), []).append(r)
    from ml.data import find_image, parse_label

    seeder, _ = get_user_model().objects.get_or_create(username=SEED_USERNAME, defaults={"is_active": False})
    by_study: dict[int, list[tuple[Image, dict[str, str]]]] = {}
    counts = {"images": 0, "reviews": 0, "already_reviewed": 0}
    for row in rows:
        path = find_image(Path(images_dir), row["image_id"].strip())
        with open(path, "rb") as fh:
            image = ingest_file(
                file=fh,
                filename=path.name,
                patient_id=row["patient_id"].strip(),
                laterality=(row.get("laterality") or "").strip(),
                view=(row.get("view") or "").strip(),
                via="seed_labels",
            ).image
        by_study.setdefault(image.study_id, []).append((image, row))
        counts["images"] += 1
    for study_id, members in by_study.items():
        study = Study.objects.get(pk=study_id)
        if study.reviews.exists():
            counts["already_reviewed"] += 1
            continue
        findings = []
        abnormal = False
        for image, row in members:
            if not parse_label(row["label"]):
                continue
            abnormal = True
            placed = False
            for c in circles.get(row["image_id"].strip(), []):
                kind = FINDING_TYPES.get((c.get("abnormality") or "").strip().upper(), Finding.Type.OTHER)
                if (c.get("x") or "").strip() and (c.get("y") or "").strip():
                    x, y, r = float(c["x"]), float(c["y"]), float(c.get("radius") or 0) or 10.0
                    left, top = max(0.0, x - r), max(0.0, y - r)
                    right, bottom = min(float(image.columns), x + r), min(float(image.rows), y + r)
                    findings.append(FindingInput(image.pk, kind, left, top, right - left, bottom - top))
                    placed = True
            if not placed:
                kind = Finding.Type.CALCIFICATION if circles.get(row["image_id"].strip()) else Finding.Type.OTHER
                findings.append(FindingInput(image.pk, kind, 0.0, 0.0, float(image.columns), float(image.rows)))
        review_submit(
            study=study,
            radiologist=seeder,
            decision="abnormal" if abnormal else "normal",
            birads=4 if abnormal else 1,
            findings=findings,
            note=f"seeded from {Path(labels_csv).name}",
        )
        counts["reviews"] += 1
    return counts


# --- triggering and the one-run-at-a-time rule ----------------------------------------------------


def _send(run_id: int, trigger: str) -> None:
    from ..tasks import retrain

    try:
        retrain.delay(run_id=run_id, trigger=trigger)
    except Exception as exc:  # broker down: the run stays queued and is released as stuck later
        log.warning("could not publish training run %s (%s)", run_id, exc)


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
            transaction.on_commit(lambda: _send(run.pk, trigger))
    return run


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
    stale = float(_setting("PORTAL_TRAINING_STALE_SECONDS", 1800))
    never_started = float(_setting("PORTAL_TRAINING_QUEUED_STALE_SECONDS", settings.PORTAL_TRAINING_TIME_LIMIT + stale))
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
    return float(_setting("PORTAL_TRAINING_SOFT_TIME_LIMIT", max(30, settings.PORTAL_TRAINING_TIME_LIMIT - 60)))


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
        _train(run_id)
    except Exception as exc:
        _fail(run_id, exc)
    return run_id


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


def _local_original(image: Image, spool: Path) -> str:
    """A local path of the image's original (downloaded once when storage is not a local disk)."""
    try:
        return default_storage.path(image.original.name)
    except NotImplementedError:
        target = spool / f"{image.sha256}{Path(image.original.name).suffix}"
        if not target.exists():
            spool.mkdir(parents=True, exist_ok=True)
            with default_storage.open(image.original.name, "rb") as src, open(target.with_suffix(".part"), "wb") as out:
                out.write(src.read())
            target.with_suffix(".part").replace(target)
        return str(target)


def to_examples(labels: list[Label]):
    from ml.data import Example

    cache = Path(_setting("PORTAL_TRAINING_CACHE_DIR", Path(settings.VAR_DIR) / "training-cache"))
    images = Image.objects.in_bulk([lab.image_id for lab in labels])
    return [
        Example(
            image_path=_local_original(images[lab.image_id], cache / "originals"),
            patient_id=lab.patient_id,
            laterality=lab.laterality if lab.laterality in ("L", "R") else "",
            label=lab.label,
            findings=lab.findings,
            image_id=str(lab.image_id),
        )
        for lab in labels
    ]


def _need_both_classes(labels: list[Label], pool: str) -> None:
    counts = _counts(labels)
    if not counts["abnormal"] or not counts["normal"]:
        raise PortalError(
            f"the {pool} pool {NOT_ENOUGH_LABELS}; it has {counts['normal']} normal and "
            f"{counts['abnormal']} abnormal from {counts['women']} women: confirm more cases first",
            code="not_enough_labels",
        )


def training_config(base: dict[str, Any] | None):
    """The champion's config (or the default) with PORTAL_TRAINING_OVERRIDES applied."""
    from ml.config import ModelConfig

    values = dict(base or ModelConfig().to_dict())
    values.update(_setting("PORTAL_TRAINING_OVERRIDES", {}) or {})
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
    _need_both_classes(train, "training")
    _need_both_classes(locked, "locked validation")
    current = champion()
    base = load_checkpoint(checkpoint_path(current)) if current is not None else None
    from_scratch = bool(_setting("PORTAL_TRAINING_FROM_SCRATCH", False)) or base is None
    config = training_config(base["config"] if base else None)
    seed = int(_setting("PORTAL_TRAINING_SEED", 0))
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
        cache_dir=Path(_setting("PORTAL_TRAINING_CACHE_DIR", Path(settings.VAR_DIR) / "training-cache")) / "features"
        if config.freeze_backbone
        else None,
        command=f"portal training run #{run_id}",
    )
    progress({"stage": "operating point"})
    _widen_operating_point(checkpoint, train_examples, config, seed)
    checkpoint["training_data"] = {**checkpoint["training_data"], "snapshot_hash": digest, "run": run_id}
    progress({"stage": "saving"})
    # Inference workers load the checkpoint by path: by default it goes beside the media, which
    # every worker shares (docker-compose mounts it in each container).
    folder = Path(_setting("PORTAL_MODEL_DIR", Path(settings.MEDIA_ROOT) / "models"))
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
    """Move the threshold from the last abnormal image it must catch to midway (in logits) to the next normal.

    fit() picks the highest threshold that reaches the target sensitivity on its
    early-stopping split, which is exactly the score of one abnormal image there:
    an abnormal image of a new woman scoring a hair lower would be missed. Sensitivity
    and specificity on that split are unchanged; the margin goes to unseen women.
    """
    from ml.data import patient_split
    from ml.evaluate import predict_examples
    from ml.inference import Predictor

    _, inner = patient_split(examples, config.val_fraction, seed)
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    probs = predictor.calibrated(predict_examples(predictor, inner))
    labels = np.array([ex.label for ex in inner])
    threshold = float(checkpoint["threshold"])
    below = probs[(labels == 0) & (probs < threshold)]
    if below.size == 0:
        return

    def logit(p: float) -> float:
        p = min(max(p, 1e-9), 1 - 1e-9)
        return float(np.log(p / (1 - p)))

    widened = float(ml_metrics.sigmoid((logit(threshold) + logit(float(below.max()))) / 2))
    checkpoint["threshold"] = widened
    checkpoint["operating_point"] = {
        **checkpoint["operating_point"],
        "fit_threshold": threshold,
        "threshold_rule": "midway in logits between the last abnormal caught and the next normal below it",
    }


# --- scoring on the locked validation set and the promotion rule -----------------------------------


def _scores(version: ModelVersion, examples) -> np.ndarray:
    from ml.evaluate import predict_examples
    from ml.inference import Predictor

    predictor = Predictor.load(checkpoint_path(version), device=_setting("PORTAL_TRAINING_DEVICE", "") or "cpu")
    return predictor.calibrated(predict_examples(predictor, examples))


def _store_plots(version: ModelVersion, labels: np.ndarray, probs: np.ndarray, threshold: float, n_bins: int) -> dict:
    from ml.evaluate import write_plots

    names = {}
    with tempfile.TemporaryDirectory() as tmp:
        for path in write_plots(labels, probs, threshold, Path(tmp), n_bins):
            stamp = timezone.now().strftime("%Y%m%d%H%M%S")
            names[path.stem] = default_storage.save(
                f"models/{version.pk}/{path.stem}-{stamp}.png", ContentFile(path.read_bytes())
            )
    return names


def locked_metrics(
    labels: np.ndarray,
    probs: np.ndarray,
    groups: list[str],
    threshold: float,
    n_bins: int = 10,
    image_ids: list[str] | None = None,
) -> dict[str, Any]:
    """AUC with its patient-bootstrap CI, sensitivity/specificity and confusion at the threshold, ECE."""
    from ml.evaluate import summarize_predictions

    result = summarize_predictions(labels, probs, groups, threshold, 0.0, n_bins)
    result.pop("seconds", None)
    called = probs >= threshold
    result["confusion"] = {
        "tp": int((called & (labels == 1)).sum()),
        "fn": int((~called & (labels == 1)).sum()),
        "fp": int((called & (labels == 0)).sum()),
        "tn": int((~called & (labels == 0)).sum()),
    }
    # Every image's probability, so the registry can show the trade-off of any operating point.
    # [label, probability, image id] per image.
    ids = image_ids or [""] * len(labels)
    result["scores"] = [[int(y), round(float(p), 6), i] for y, p, i in zip(labels, probs, ids, strict=True)]
    return result


def score_version(version: ModelVersion, examples, *, snapshot_hash: str = "", run_id: int | None = None) -> dict:
    """Score a version on the locked validation examples at its current operating point; store plots."""
    started = time.perf_counter()
    labels = np.array([ex.label for ex in examples], dtype=np.int64)
    probs = _scores(version, examples)
    result = locked_metrics(
        labels, probs, [ex.patient_id for ex in examples], version.threshold, image_ids=[ex.image_id for ex in examples]
    )
    result["plots"] = _store_plots(version, labels, probs, version.threshold, 10)
    result.update(
        {
            "snapshot_hash": snapshot_hash,
            "run": run_id,
            "evaluated_at": timezone.now().isoformat(),
            "seconds": round(time.perf_counter() - started, 2),
        }
    )
    return result


def decide(candidate: dict[str, Any], incumbent: dict[str, Any] | None) -> dict[str, Any]:
    """The promotion rule: AUC not lower than the champion's by more than the margin, sensitivity not lower."""
    margin = float(_setting("PORTAL_PROMOTION_AUC_MARGIN", 0.02))
    if incumbent is None:
        return {"outcome": "promoted", "reasons": ["there was no champion"], "auc_margin": margin}
    reasons = []
    if not candidate["auc"] >= incumbent["auc"] - margin:
        reasons.append(
            f"validation AUC {candidate['auc']:.3f} is lower than the champion's {incumbent['auc']:.3f} "
            f"by more than the margin {margin:.3f}"
        )
    if not candidate["sensitivity"] >= incumbent["sensitivity"] - 1e-9:
        reasons.append(
            f"sensitivity at the operating point {candidate['sensitivity']:.3f} is lower than "
            f"the champion's {incumbent['sensitivity']:.3f}"
        )
    if reasons:
        return {"outcome": "rejected", "reasons": reasons, "auc_margin": margin}
    return {
        "outcome": "promoted",
        "reasons": [
            f"validation AUC {candidate['auc']:.3f} vs the champion's {incumbent['auc']:.3f} (margin {margin:.3f}); "
            f"sensitivity {candidate['sensitivity']:.3f} vs {incumbent['sensitivity']:.3f}"
        ],
        "auc_margin": margin,
    }


def challenge(
    candidate: ModelVersion, *, examples, snapshot_hash: str = "", run_id: int | None = None, progress=None
) -> dict[str, Any]:
    """Score the candidate and the champion on the same locked examples and apply the promotion rule.

    Stores each version's locked-set metrics; returns the decision (not yet applied).
    """
    incumbent = champion()
    if incumbent is not None and incumbent.pk == candidate.pk:
        raise Conflict("this version is already the champion")
    candidate_metrics = score_version(candidate, examples, snapshot_hash=snapshot_hash, run_id=run_id)
    if progress:
        progress({"stage": "evaluating", "candidate_auc": candidate_metrics["auc"]})
    incumbent_metrics = None
    if incumbent is not None:
        incumbent_metrics = score_version(incumbent, examples, snapshot_hash=snapshot_hash, run_id=run_id)
        ModelVersion.objects.filter(pk=incumbent.pk).update(
            metrics={**incumbent.metrics, "locked_validation": incumbent_metrics}
        )
    decision = decide(candidate_metrics, incumbent_metrics)
    decision["champion"] = incumbent.name if incumbent else None
    decision["champion_metrics"] = (
        {k: incumbent_metrics[k] for k in ("auc", "auc_ci_low", "auc_ci_high", "sensitivity", "specificity")}
        if incumbent_metrics
        else None
    )
    candidate.metrics = {**candidate.metrics, "locked_validation": candidate_metrics, "decision": decision}
    candidate.save(update_fields=["metrics"])
    return decision


def apply_decision(candidate: ModelVersion, decision: dict[str, Any], *, run_id: int | None = None) -> ModelVersion:
    """Promote or reject the candidate as decided; promotion may re-predict unread studies."""
    text = "; ".join(decision["reasons"])
    if decision["outcome"] == "promoted":
        promote_version(candidate)
        ModelVersion.objects.filter(pk=candidate.pk).update(note=f"Promoted by run #{run_id}: {text}"[:2000])
        record_event(action="model_promote", obj=candidate, detail={"run": run_id, "automatic": True, **decision})
        if _setting("PORTAL_REPREDICT_ON_PROMOTION", False):
            transaction.on_commit(lambda: repredict_unread(candidate))
    else:
        ModelVersion.objects.filter(pk=candidate.pk).update(
            status=ModelVersion.Status.REJECTED, note=f"Rejected by run #{run_id}: {text}"[:2000]
        )
        record_event(action="model_reject", obj=candidate, detail={"run": run_id, **decision})
    candidate.refresh_from_db()
    return candidate


def repredict_unread(version: ModelVersion) -> int:
    """Queue predictions of every unread study's images by `version`; earlier predictions keep theirs."""
    return len(rerun_studies(Study.objects.filter(status__in=UNREAD), version=version))


# --- manual promotion, rollback and the operating point (admins) -----------------------------------


@transaction.atomic
def promote(*, version: ModelVersion, user=None, ip_address: str | None = None, repredict: bool = False):
    """Make a version the champion by hand (any status but champion); the champion retires."""
    version = ModelVersion.objects.select_for_update().get(pk=version.pk)
    if version.status == ModelVersion.Status.CHAMPION:
        raise Conflict(f"{version.name} is already the champion")
    if not checkpoint_path(version).exists():
        raise PortalError(f"the checkpoint file of {version.name} is missing; it cannot serve", code="missing_file")
    previous = champion()
    promote_version(version)
    record_event(
        action="model_promote",
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
    if not checkpoint_path(previous).exists():
        raise PortalError(f"the checkpoint file of {previous.name} is missing; it cannot serve", code="missing_file")
    promote_version(previous)
    record_event(
        action="model_rollback", user=user, obj=previous, ip_address=ip_address, detail={"retired": current.name}
    )
    if repredict:
        transaction.on_commit(lambda: repredict_unread(previous))
    return previous


@transaction.atomic
def set_operating_point(*, version: ModelVersion, threshold: float, user=None, ip_address: str | None = None):
    """Move a version's threshold; studies scored by it are flagged again at the new threshold."""
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
    Study.objects.filter(exam_model=version, exam_score__gte=threshold).update(exam_flag=True)
    Study.objects.filter(exam_model=version, exam_score__lt=threshold).update(exam_flag=False)
    record_event(
        action="model_threshold",
        user=user,
        obj=version,
        ip_address=ip_address,
        detail={"from": old, "to": threshold},
    )
    return version


# --- reads for the registry page and the API ------------------------------------------------------


def recent_exam_scores(version: ModelVersion, days: int | None = None) -> list[float]:
    """Exam scores this version gave to studies received in the last `days` days (highest breast mean)."""
    days = days or int(_setting("PORTAL_RECALL_WINDOW_DAYS", 90))
    since = timezone.now() - timedelta(days=days)
    rows = Prediction.objects.filter(
        model_version=version, status=Prediction.Status.DONE, image__study__created__gte=since
    ).values_list("image__study_id", "image__laterality", "probability")
    breasts: dict[tuple[int, str], list[float]] = {}
    for study_id, laterality, probability in rows:
        breasts.setdefault((study_id, laterality), []).append(probability)
    exams: dict[int, float] = {}
    for (study_id, _), values in breasts.items():
        exams[study_id] = max(exams.get(study_id, 0.0), float(np.mean(values)))
    return list(exams.values())


def trade_off(version: ModelVersion, threshold: float | None = None) -> dict[str, Any]:
    """Sensitivity and specificity on the locked set and the recall rate on recent exams at a threshold."""
    threshold = version.threshold if threshold is None else float(threshold)
    locked = (version.metrics or {}).get("locked_validation") or {}
    out: dict[str, Any] = {"threshold": threshold, "sensitivity": None, "specificity": None}
    if locked.get("scores"):
        y = np.array([row[0] for row in locked["scores"]], dtype=np.int64)
        p = np.array([row[1] for row in locked["scores"]], dtype=np.float64)
        out["sensitivity"], out["specificity"] = ml_metrics.sensitivity_specificity(y, p, threshold)
    exams = recent_exam_scores(version)
    out["recent_exams"] = len(exams)
    out["recall_rate"] = float(np.mean(np.array(exams) >= threshold)) if exams else None
    return out


def registry_versions():
    return ModelVersion.objects.order_by("-created", "-pk").prefetch_related("training_runs")


def labelled_counts() -> dict[str, Any]:
    """How many labels wait for the next run (by pool) and whether they differ from the last successful run."""
    labels = collect_labels()
    digest, summary = snapshot(labels)
    return {
        "train": summary["train"],
        "validation": summary["validation"],
        "unassigned": _counts([lab for lab in labels if not lab.split]),
        "new_since_last_run": has_new_labels(digest),
        "reviewed_studies": Review.objects.values("study").distinct().count(),
    }
