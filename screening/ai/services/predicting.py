"""Running predictions, in the inference worker: claim a batch, decode, call the model, store the results.

The only prediction code that loads the model (torch): tasks and commands reach it, the web process never does
(import-linter's web-without-torch contract). Enqueueing, exam scores and the sweeper are in `predictions`.

Crash safety comes from the database, not from the broker: a Prediction row is
claimed with a conditional UPDATE (queued -> running), so a redelivered or
duplicated task finds nothing to do, and (image, model version) is unique.
Every row a call claims ends done, failed with its reason, or back in the queue
for a bounded retry before the call returns: embedded mode has no sweeper. Only a
worker that dies leaves a row `running`; the sweeper puts it back in the queue
until it has been tried PORTAL_PREDICTION_MAX_ATTEMPTS times, then fails it.
A heatmap file exists only for a `done` row.
"""

from __future__ import annotations

import io
import logging
import math
import time
import uuid

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import DatabaseError, transaction
from django.db.models import F
from django.utils import timezone
from PIL import Image as PILImage

from screening import dispatch
from screening.ai import inference
from screening.ai.services.predictions import (
    PREDICT,
    _fail,
    _fail_unservable,
    _give_back,
    _reason,
    _update_studies_of,
)
from screening.ai.services.registry import mark_unservable
from screening.core.storage import delete_stored
from screening.errors import PortalError
from screening.intake.services.media import decode_for_model
from screening.models import Image, Prediction

log = logging.getLogger(__name__)


class TryAgain(Exception):
    """The prediction went back to the queue after a transient failure: retry it later (a bounded number of times)."""


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
    """Claim this prediction and others waiting for the same model, a batch at a time: the first batch now,
    each next one when the loader is due to decode it (up to PORTAL_INFERENCE_BATCHES_PER_TASK batches a
    task). Claiming just in time keeps the loader busy across what would be task boundaries without taking
    work another worker could do now. Predict, record each batch as it ends.

    Returns how many predictions this call recorded as done. A duplicate or
    redelivered task returns 0 without touching anything. Raises TryAgain when the
    prediction went back to the queue after a transient failure (a checkpoint not
    yet synced, the database or storage); it fails for good once it has been tried
    PORTAL_PREDICTION_MAX_ATTEMPTS times. A checkpoint that cannot be loaded marks
    its version unservable and fails its predictions; nothing is published again.
    """
    prediction = Prediction.objects.filter(pk=prediction_id).select_related("model_version").first()
    if prediction is None or not _claim([prediction_id]):
        return 0
    version = prediction.model_version
    try:
        if not version.servable:
            raise inference.Unservable(version.load_error or f"model {version.name} cannot be loaded")
        predictor = inference.predictor_for(version)
    except inference.Unservable as exc:
        mark_unservable(version, str(exc))
        _fail_unservable(version)
        return 0
    except Exception as exc:
        # Only this row was claimed: it goes back alone (or fails at the attempt limit), nothing is republished.
        if _give_back([prediction_id], _reason(exc)):
            raise TryAgain(_reason(exc)) from exc
        _update_studies_of([prediction_id])
        return 0
    batch = [prediction_id] + _claim(_waiting_with(version.pk, prediction_id, settings.PORTAL_INFERENCE_BATCH - 1))
    try:
        return _predict_batch(predictor, batch, version.pk)  # each batch's studies are scored as it is stored
    except Exception as exc:
        # Nothing claimed may stay running (embedded mode has no sweeper): each row goes back to the
        # queue, at most PORTAL_PREDICTION_MAX_ATTEMPTS times in all, or fails with the reason.
        requeued = _give_back(batch, _reason(exc))
        _update_studies_of(batch)
        for pk in requeued:
            if pk != prediction_id:  # its own task may have come and gone while this call held it
                dispatch.send(PREDICT, pk)
        if prediction_id in requeued:
            raise TryAgain(_reason(exc)) from exc
        return 0


def _loader(row: Prediction):
    def load(image=row.image):
        pixels, kind = decode_for_model(image)
        return pixels, image.laterality, kind

    return load


def _predict_batch(predictor, batch: list[int], version_id: int | None = None) -> int:
    """Predict the claimed rows a model batch at a time, storing each batch (heatmaps, then its rows in one
    transaction) while the predictor's loader thread decodes the next. With `version_id`, more rows waiting
    for that model are claimed a batch at a time as the loader needs them, and added to `batch` (so that a
    failure gives them back too). Returns how many were recorded."""
    size = settings.PORTAL_INFERENCE_BATCH
    rows = list(Prediction.objects.select_related("image").filter(pk__in=batch).order_by("pk"))
    loaders = [_loader(row) for row in rows]
    claimed_batches = math.ceil(len(rows) / size)

    def more() -> list:
        nonlocal claimed_batches
        if version_id is None or claimed_batches >= settings.PORTAL_INFERENCE_BATCHES_PER_TASK:
            return []
        try:
            new = _claim(_waiting_with(version_id, batch[0], size))
        except DatabaseError:
            log.warning("could not claim more predictions; this task stops after its current batch")
            return []
        batch.extend(new)
        claimed_batches += 1
        added = list(Prediction.objects.select_related("image").filter(pk__in=new).order_by("pk"))
        rows.extend(added)
        loaders.extend(_loader(row) for row in added)
        return [_loader(row) for row in added]

    side = _heatmap_side()
    stream = predictor.stream_batches(loaders, batch_size=size, heatmap_max_side=side, more=more)
    recorded = done = 0
    try:
        while done < len(rows):
            try:
                outcomes = next(stream)
            except StopIteration:
                break
            except Exception:
                # The model failed on a whole batch: the rest one by one, so one bad image fails alone with its reason.
                log.warning("batch failed; predicting the other %d images one by one", len(rows) - done)
                for row, loader in zip(rows[done:], loaders[done:], strict=True):
                    recorded += _record_batch([row], [_predict_alone(predictor, loader, side)])
                return recorded
            t0 = time.perf_counter()
            recorded += _record_batch(rows[done : done + len(outcomes)], outcomes)
            _log_timing(outcomes, (time.perf_counter() - t0) * 1000.0)
            done += len(outcomes)
        return recorded
    finally:
        stream.close()  # a storage or database error while recording: the loader thread stops with it


def _log_timing(outcomes: list, store_ms: float) -> None:
    """Where a batch's time went, per image (medians in `bench/pipeline.py`): numbers only, no patient data."""
    results = [o for o in outcomes if not isinstance(o, BaseException)]
    if not results:
        return
    mean = lambda name: sum(getattr(r, name, 0.0) or 0.0 for r in results) / len(results)  # noqa: E731
    log.info(
        "batch timing ms/image: decode=%.1f preprocess=%.1f forward=%.1f heatmap=%.1f store=%.1f images=%d",
        mean("decode_ms"),
        mean("preprocess_ms"),
        mean("inference_ms"),
        mean("heatmap_ms"),
        store_ms / len(outcomes),
        len(outcomes),
    )


def _predict_alone(predictor, loader, side: int):
    """One image's result, or the exception that stopped it."""
    try:
        return next(iter(predictor.stream_batches([loader], batch_size=1, heatmap_max_side=side)))[0]
    except Exception as exc:
        return exc


def _record_batch(rows: list[Prediction], outcomes: list) -> int:
    """Fail the rows whose image could not be read or predicted, record the others, then score their studies
    (a study's exam score appears as soon as its last image is stored); returns how many were recorded."""
    pairs: list[tuple[Prediction, object]] = []
    for row, outcome in zip(rows, outcomes, strict=True):
        if isinstance(outcome, PortalError):
            _fail(row, outcome.message)
        elif isinstance(outcome, BaseException):
            _fail(row, f"the model could not process this image: {outcome}")
        else:
            pairs.append((row, outcome))
    recorded = _record_all(pairs)
    _update_studies_of([row.pk for row in rows])
    return recorded


def _unusable(result) -> str:
    """Why the model's answer cannot be recorded ('' when it can)."""
    try:
        probability = float(result.probability)
        heatmap = np.asarray(result.heatmap, dtype=np.float64)
    except (TypeError, ValueError):
        return "the model gave no usable probability or heatmap for this image"
    if not math.isfinite(probability) or not 0.0 <= probability <= 1.0:
        return f"the model gave an invalid probability ({probability}) for this image"
    if heatmap.ndim != 2 or heatmap.size == 0 or not np.isfinite(heatmap).all():
        return "the model gave a heatmap with missing or non-finite values for this image"
    return ""


def _heatmap_side() -> int:
    """Longest side of a stored heatmap: the model makes it at this size directly (never at full resolution)."""
    return min(settings.PORTAL_RENDITION_MAX_SIDE, 1024)


def _heatmap_png(heatmap: np.ndarray) -> bytes:
    """The heatmap as an 8-bit PNG aligned with the display rendition (same aspect as the original)."""
    img = PILImage.fromarray(np.round(np.clip(heatmap, 0, 1) * 255).astype(np.uint8), mode="L")
    longest = max(img.size)
    limit = _heatmap_side()
    if longest > limit:
        scale = limit / longest
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), PILImage.Resampling.BOX)
    buffer = io.BytesIO()
    img.save(buffer, format="PNG", compress_level=1)  # a smooth map: level 1 is 3x faster, the file 25% larger
    return buffer.getvalue()


def _record_all(pairs: list[tuple[Prediction, object]]) -> int:
    """Store the heatmaps, then mark the rows done in one transaction; returns how many were recorded.

    A file is deleted again unless its row ends done (an error, or the sweeper took the row back meanwhile).
    """
    ready: list[tuple[Prediction, object, str]] = []
    recorded: set[int] = set()
    try:
        for row, result in pairs:
            problem = _unusable(result)
            if problem:
                _fail(row, problem)
                continue
            key = uuid.uuid4().hex
            name = default_storage.save(f"heatmaps/{key[:2]}/{key}.png", ContentFile(_heatmap_png(result.heatmap)))
            ready.append((row, result, name))
        with transaction.atomic():
            now = timezone.now()
            for row, result, name in ready:
                if Prediction.objects.filter(pk=row.pk, status=Prediction.Status.RUNNING).update(
                    status=Prediction.Status.DONE,
                    probability=float(result.probability),
                    heatmap=name,
                    error="",
                    preprocess_ms=result.preprocess_ms,
                    inference_ms=result.inference_ms,
                    logit=_finite_or_none(getattr(result, "logit", None)),
                    regions=list(getattr(result, "regions", None) or []),
                    source_kind=getattr(result, "source_kind", "") or "",
                    updated=now,
                ):
                    recorded.add(row.pk)
            Image.objects.filter(predictions__pk__in=recorded).update(status=Image.Status.PREDICTED)
    except BaseException:
        recorded = set()  # the transaction rolled back: no row holds any of these files
        raise
    finally:
        for row, _, name in ready:
            if row.pk not in recorded:
                delete_stored([name])
    return len(recorded)


def _finite_or_none(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None
