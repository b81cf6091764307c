"""Predictions: enqueue after ingest, claim and run in a worker, exam scores, re-runs and the sweeper.

Crash safety comes from the database, not from the broker: a Prediction row is
claimed with a conditional UPDATE (queued -> running), so a redelivered or
duplicated task finds nothing to do, and (image, model version) is unique.
A worker that dies leaves a row `running`; the sweeper puts it back in the queue
until it has been tried PORTAL_PREDICTION_MAX_ATTEMPTS times, then fails it.
"""

from __future__ import annotations

import io
import logging
import time
import uuid
from collections.abc import Iterable
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from PIL import Image as PILImage

from ..errors import PortalError
from ..models import Image, ModelVersion, Prediction, Study
from .ingest import decode_original
from .models import champion

log = logging.getLogger(__name__)


# --- enqueue -----------------------------------------------------------------------------------


def enqueue_images(image_ids: Iterable[int], *, version: ModelVersion | None = None) -> list[int]:
    """Queue a prediction of each image by `version` (default: the champion); tasks go out after commit.

    Idempotent: an image that already has a queued, running or done prediction by that
    version is left alone; a failed one is queued again. Returns the queued prediction ids.
    """
    version = version or champion()
    if version is None:
        return []  # no model yet: the sweeper queues these images once a champion exists
    queued: list[int] = []
    with transaction.atomic():
        for image_id in image_ids:
            prediction, created = Prediction.objects.get_or_create(image_id=image_id, model_version=version)
            if not created:
                if prediction.status != Prediction.Status.FAILED:
                    continue
                Prediction.objects.filter(pk=prediction.pk).update(
                    status=Prediction.Status.QUEUED, error="", attempts=0, updated=timezone.now()
                )
            queued.append(prediction.pk)
        if queued:
            Image.objects.filter(predictions__pk__in=queued).update(status=Image.Status.QUEUED)
            transaction.on_commit(lambda: send_tasks(queued))
    return queued


def send_tasks(prediction_ids: Iterable[int]) -> None:
    """Publish one task per prediction. A broker that is down is logged, not raised: the sweeper resends."""
    from ..tasks import predict_image

    for prediction_id in prediction_ids:
        try:
            predict_image.delay(prediction_id)
        except Exception as exc:  # kombu raises OperationalError and friends when the broker is down
            log.warning("could not publish prediction %s (%s); the sweeper will resend it", prediction_id, exc)


def rerun_studies(studies: Iterable[Study], *, version: ModelVersion | None = None) -> list[int]:
    """Predict every image of these studies again with the champion; old predictions keep their versions."""
    ids = Image.objects.filter(study__in=list(studies)).values_list("pk", flat=True)
    return enqueue_images(list(ids), version=version)


# --- run (in the worker) -------------------------------------------------------------------------


def _claim(prediction_ids: list[int]) -> list[int]:
    """Atomically move queued predictions to running; returns the ones this caller now owns."""
    owned = []
    for pk in prediction_ids:
        if Prediction.objects.filter(pk=pk, status=Prediction.Status.QUEUED).update(
            status=Prediction.Status.RUNNING, attempts=F("attempts") + 1, updated=timezone.now()
        ):
            owned.append(pk)
    return owned


def _waiting_with(version_id: int, exclude: int, limit: int) -> list[int]:
    if limit <= 0:
        return []
    return list(
        Prediction.objects.filter(model_version_id=version_id, status=Prediction.Status.QUEUED)
        .exclude(pk=exclude)
        .order_by("created")
        .values_list("pk", flat=True)[:limit]
    )


def run_prediction(prediction_id: int) -> int:
    """Claim this prediction (and up to a batch of others waiting for the same model), predict, record.

    Returns how many predictions this call completed. A duplicate or redelivered task
    returns 0 without touching anything.
    """
    from ..inference import predictor_for

    prediction = Prediction.objects.filter(pk=prediction_id).select_related("model_version").first()
    if prediction is None or not _claim([prediction_id]):
        return 0
    batch = [prediction_id] + _claim(
        _waiting_with(prediction.model_version_id, prediction_id, settings.PORTAL_INFERENCE_BATCH - 1)
    )
    try:
        predictor = predictor_for(prediction.model_version)
    except Exception:
        # Transient (storage, database, a checkpoint not yet synced): give the rows back and retry.
        Prediction.objects.filter(pk__in=batch, status=Prediction.Status.RUNNING).update(
            status=Prediction.Status.QUEUED, updated=timezone.now()
        )
        send_tasks(batch[1:])
        raise
    ready: list[Prediction] = []
    items: list[tuple[np.ndarray, str]] = []
    for row in Prediction.objects.select_related("image").filter(pk__in=batch).order_by("pk"):
        try:
            items.append((decode_original(row.image), row.image.laterality))
            ready.append(row)
        except PortalError as exc:
            _fail(row, exc.message)
    for row, result in _predict_each(predictor, ready, items):
        _record(row, result)
    for study_id in {row.image.study_id for row in Prediction.objects.filter(pk__in=batch).select_related("image")}:
        update_exam_scores(Study.objects.get(pk=study_id))
    return len(ready)


def _predict_each(predictor, rows: list[Prediction], items: list) -> list[tuple[Prediction, object]]:
    """Batch inference; if the batch fails, one by one, so one bad image fails alone with its reason."""
    if not items:
        return []
    try:
        return list(zip(rows, predictor.predict(items, batch_size=settings.PORTAL_INFERENCE_BATCH), strict=True))
    except Exception:
        log.warning("batch of %d failed; predicting one by one", len(items))
    pairs = []
    for row, item in zip(rows, items, strict=True):
        try:
            pairs.append((row, predictor.predict([item])[0]))
        except Exception as exc:
            _fail(row, f"the model could not process this image: {exc}")
    return pairs


def _heatmap_png(heatmap: np.ndarray) -> bytes:
    """The heatmap as an 8-bit PNG aligned with the display rendition (same aspect as the original)."""
    img = PILImage.fromarray(np.round(np.clip(heatmap, 0, 1) * 255).astype(np.uint8), mode="L")
    longest = max(img.size)
    limit = min(settings.PORTAL_RENDITION_MAX_SIDE, 1024)
    if longest > limit:
        scale = limit / longest
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), PILImage.Resampling.BOX)
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def _record(row: Prediction, result) -> None:
    key = uuid.uuid4().hex
    name = default_storage.save(f"heatmaps/{key[:2]}/{key}.png", ContentFile(_heatmap_png(result.heatmap)))
    with transaction.atomic():
        updated = Prediction.objects.filter(pk=row.pk, status=Prediction.Status.RUNNING).update(
            status=Prediction.Status.DONE,
            probability=float(result.probability),
            heatmap=name,
            error="",
            preprocess_ms=result.preprocess_ms,
            inference_ms=result.inference_ms,
            updated=timezone.now(),
        )
        if updated:
            Image.objects.filter(pk=row.image_id).update(status=Image.Status.PREDICTED)
    if not updated:  # the sweeper took the row back meanwhile: keep its result, drop ours
        default_storage.delete(name)


def _fail(row: Prediction, reason: str) -> None:
    Prediction.objects.filter(pk=row.pk).update(
        status=Prediction.Status.FAILED, error=reason[:2000], updated=timezone.now()
    )
    Image.objects.filter(pk=row.image_id).exclude(status=Image.Status.PREDICTED).update(status=Image.Status.FAILED)
    log.warning("prediction %s failed: %s", row.pk, reason)


def fail_prediction(prediction_id: int, reason: str) -> None:
    """Terminal failure decided by the task (time limit, retries exhausted)."""
    row = Prediction.objects.filter(pk=prediction_id).first()
    if row is not None and row.status != Prediction.Status.DONE:
        _fail(row, reason)
        update_exam_scores(row.image.study)


# --- exam scores ---------------------------------------------------------------------------------


def update_exam_scores(study: Study) -> Study:
    """Per-breast and per-exam scores from the newest model version that has predicted this study.

    A breast's score is the mean of its views' probabilities (CC and MLO show the
    same tissue; averaging them halves single-view noise, as in Wu et al. 2019);
    the exam score is the highest breast score, since one abnormal breast makes an
    abnormal exam. Images of unknown laterality count as a breast of their own.
    """
    done = Prediction.objects.filter(image__study=study, status=Prediction.Status.DONE)
    latest = done.order_by("-model_version_id").select_related("model_version").first()
    if latest is None:
        study.score_left = study.score_right = study.exam_score = study.exam_flag = study.exam_model = None
    else:
        version = latest.model_version
        by_side: dict[str, list[float]] = {}
        for laterality, probability in done.filter(model_version=version).values_list(
            "image__laterality", "probability"
        ):
            by_side.setdefault(laterality, []).append(probability)
        means = {side: float(np.mean(values)) for side, values in by_side.items()}
        study.score_left, study.score_right = means.get("L"), means.get("R")
        study.exam_score = max(means.values())
        study.exam_flag = study.exam_score >= version.threshold
        study.exam_model = version
    pending = Image.objects.filter(study=study).exclude(status__in=[Image.Status.PREDICTED, Image.Status.FAILED])
    if study.status == Study.Status.NEW and not pending.exists() and study.images.exists():
        study.status = Study.Status.PREDICTED
    study.save(
        update_fields=["score_left", "score_right", "exam_score", "exam_flag", "exam_model", "status", "updated"]
    )
    return study


# --- the sweeper ---------------------------------------------------------------------------------


def sweep(now=None) -> dict[str, int]:
    """Re-queue work a dead worker or a down broker left behind; fail what has been tried too often."""
    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.PORTAL_PREDICTION_STALE_SECONDS)
    counts = {"requeued": 0, "resent": 0, "failed": 0, "enqueued_images": 0}
    resend: list[int] = []
    for row in Prediction.objects.filter(status=Prediction.Status.RUNNING, updated__lt=stale):
        if row.attempts >= settings.PORTAL_PREDICTION_MAX_ATTEMPTS:
            _fail(row, f"gave up after {row.attempts} attempts: the worker stopped or timed out each time")
            update_exam_scores(row.image.study)
            counts["failed"] += 1
        elif Prediction.objects.filter(pk=row.pk, status=Prediction.Status.RUNNING, updated__lt=stale).update(
            status=Prediction.Status.QUEUED, updated=now
        ):
            resend.append(row.pk)
            counts["requeued"] += 1
    waiting = Prediction.objects.filter(
        status=Prediction.Status.QUEUED,
        updated__lt=now - timedelta(seconds=settings.PORTAL_PREDICTION_REQUEUE_SECONDS),
    )
    for pk in waiting.values_list("pk", flat=True):
        Prediction.objects.filter(pk=pk).update(updated=now)
        resend.append(pk)
        counts["resent"] += 1
    if resend:
        transaction.on_commit(lambda: send_tasks(resend))
    version = champion()
    if version is not None:
        orphans = Image.objects.filter(status=Image.Status.RECEIVED).filter(~Q(predictions__model_version=version))
        counts["enqueued_images"] = len(enqueue_images(list(orphans.values_list("pk", flat=True)), version=version))
    if any(counts.values()):
        log.info("sweep: %s", counts)
    return counts


def wait_for(prediction_ids: list[int], timeout: float) -> bool:
    """Block until these predictions are done or failed (for commands and benches)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (
            not Prediction.objects.filter(pk__in=prediction_ids)
            .exclude(status__in=[Prediction.Status.DONE, Prediction.Status.FAILED])
            .exists()
        ):
            return True
        time.sleep(0.2)
    return False
