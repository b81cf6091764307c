"""Predictions: enqueue after ingest, exam scores, re-runs and the sweeper (the run itself: `predicting`).

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

import logging
import time
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from ml.scoring import exam_model_for, flag_exam, score_exam, thresholds_for
from screening import dispatch
from screening.ai.services.registry import champion
from screening.audit import actions
from screening.audit.services import record_event
from screening.core.storage import delete_stored_after_commit
from screening.exchange.services import export
from screening.models import Image, ModelVersion, Prediction, Study

log = logging.getLogger(__name__)

PREDICT = "screening.tasks.predict_image"


# --- enqueue -----------------------------------------------------------------------------------


def enqueue_images(image_ids: Iterable[int], *, version: ModelVersion | None = None) -> list[int]:
    """Queue a prediction of each image by `version` (default: the champion); tasks go out after commit.

    A study is scored by one version, so the other images of these studies that the
    version has not predicted are queued with them. Idempotent: an image that already
    has a queued, running or done prediction by that version is left alone; a failed
    one is queued again. A version that cannot serve queues nothing: the images stay
    `received` until one that can is promoted. Returns the queued prediction ids.
    """
    version = version or champion()
    ids = set(image_ids)
    if version is None or not version.servable or not ids:
        return []
    ids |= set(
        Image.objects.filter(study__images__pk__in=ids)
        .exclude(status=Image.Status.FAILED)
        .exclude(predictions__model_version=version)
        .values_list("pk", flat=True)
    )
    queued: list[int] = []
    with transaction.atomic():
        for image_id in sorted(ids):
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
            for pk in queued:
                dispatch.after_commit(PREDICT, pk)
    return queued


def enqueue_waiting_images(version_id: int) -> list[int]:
    """After a promotion: queue the images no model could predict yet for the new champion.

    Those are images still `received`, and images whose only predictions failed
    because their model could not be loaded. Nothing when the version is no longer
    the champion (a later promotion queues its own).
    """
    version = ModelVersion.objects.filter(pk=version_id, status=ModelVersion.Status.CHAMPION).first()
    if version is None or not version.servable:
        return []
    return enqueue_images(list(_waiting_images(version).values_list("pk", flat=True)), version=version)


def _waiting_images(version: ModelVersion):
    stranded = Q(status=Image.Status.FAILED) & ~Q(predictions__model_version__servable=True)
    return Image.objects.filter(Q(status=Image.Status.RECEIVED) | stranded).exclude(predictions__model_version=version)


def rerun_studies(
    studies: Iterable[Study], *, version: ModelVersion | None = None, user=None, ip_address: str | None = None
) -> list[int]:
    """Predict every image of these studies again with the champion; old predictions keep their versions.

    Each study's re-run is audited (who asked, which version, how many predictions queued)."""
    studies = list(studies)
    version = version or champion()
    with transaction.atomic():
        queued = enqueue_images(
            list(Image.objects.filter(study__in=studies).values_list("pk", flat=True)), version=version
        )
        by_study = dict(
            Prediction.objects.filter(pk__in=queued).values_list("image__study_id").annotate(n=Count("id")).order_by()
        )
        for study in studies:
            record_event(
                action=actions.RERUN_INFERENCE,
                user=user,
                study=study,
                obj=study,
                ip_address=ip_address,
                detail={"model_version": version.name if version else None, "queued": by_study.get(study.pk, 0)},
            )
    return queued


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _fail(row: Prediction, reason: str) -> None:
    """A terminal failure with its reason; a heatmap the row may hold is deleted with it."""
    current = Prediction.objects.filter(pk=row.pk).exclude(status=Prediction.Status.DONE).first()
    if current is None:  # done meanwhile: a result is never overwritten by a failure
        return
    Prediction.objects.filter(pk=row.pk).exclude(status=Prediction.Status.DONE).update(
        status=Prediction.Status.FAILED, error=reason[:2000], probability=None, heatmap="", updated=timezone.now()
    )
    Image.objects.filter(pk=row.image_id).exclude(status=Image.Status.PREDICTED).update(status=Image.Status.FAILED)
    if current.heatmap:
        delete_stored_after_commit([current.heatmap.name])
    log.warning("prediction %s failed: %s", row.pk, reason)


def _give_back(prediction_ids: list[int], reason: str) -> list[int]:
    """Running rows go back to the queue, or fail once tried PORTAL_PREDICTION_MAX_ATTEMPTS times; returns requeued."""
    limit = settings.PORTAL_PREDICTION_MAX_ATTEMPTS
    requeued = []
    for row in Prediction.objects.filter(pk__in=prediction_ids, status=Prediction.Status.RUNNING):
        if row.attempts >= limit:
            _fail(row, f"gave up after {row.attempts} attempts: {reason}")
        elif Prediction.objects.filter(pk=row.pk, status=Prediction.Status.RUNNING).update(
            status=Prediction.Status.QUEUED, updated=timezone.now()
        ):
            requeued.append(row.pk)
    return requeued


def _fail_unservable(version: ModelVersion) -> None:
    """Every queued or running prediction by a version that cannot be loaded fails with the reason."""
    version.refresh_from_db(fields=["servable", "load_error"])
    rows = list(
        Prediction.objects.filter(
            model_version=version, status__in=[Prediction.Status.QUEUED, Prediction.Status.RUNNING]
        )
    )
    for row in rows:
        _fail(row, version.load_error)
    _update_studies_of([row.pk for row in rows])


def fail_prediction(prediction_id: int, reason: str) -> None:
    """Terminal failure decided by the task (time limit, retries exhausted)."""
    row = Prediction.objects.filter(pk=prediction_id).first()
    if row is not None and row.status != Prediction.Status.DONE:
        _fail(row, reason)
        update_exam_scores(row.image.study)


# --- exam scores ---------------------------------------------------------------------------------


def _update_studies_of(prediction_ids: list[int]) -> None:
    for study in Study.objects.filter(images__predictions__pk__in=prediction_ids).distinct():
        update_exam_scores(study)


def scoring_version(study: Study) -> ModelVersion | None:
    """The newest model version with a done prediction of every image of the study that has not failed.

    An image has failed when all its predictions failed; an image still waiting counts,
    so a version is chosen only once it has predicted the whole exam.
    """
    done_by: dict[int, set[int]] = {}
    live: set[int] = set()  # images with a done or pending prediction
    seen: set[int] = set()
    for image_id, version_id, status in Prediction.objects.filter(image__study=study).values_list(
        "image_id", "model_version_id", "status"
    ):
        seen.add(image_id)
        if status == Prediction.Status.DONE:
            done_by.setdefault(version_id, set()).add(image_id)
        if status != Prediction.Status.FAILED:
            live.add(image_id)
    images = set(Image.objects.filter(study=study).values_list("pk", flat=True))
    required = images - (seen - live)
    for version_id in sorted(done_by, reverse=True):
        if required <= done_by[version_id]:
            return ModelVersion.objects.get(pk=version_id)
    return None


def update_exam_scores(study: Study) -> Study:
    """Per-breast and per-exam scores (ml.scoring: the version's exam model) from one model version.

    That version is `scoring_version(study)`; until one has predicted every image,
    the study has no score, so no exam ever mixes models.
    """
    version = scoring_version(study)
    before = (study.exam_model_id, study.score_left, study.score_right, study.exam_score)
    if version is None:
        study.score_left = study.score_right = study.exam_score = study.exam_flag = study.exam_model = None
        study.source_kind = ""
    else:
        rows = list(
            Prediction.objects.filter(
                image__study=study, model_version=version, status=Prediction.Status.DONE
            ).values_list("image__laterality", "logit", "probability", "source_kind")
        )
        kinds = sorted({kind for *_, kind in rows if kind})
        study.source_kind = "film" if "film" in kinds else (kinds[0] if kinds else "")
        breasts, study.exam_score = score_exam(
            exam_model_for(version.metrics, study.source_kind), [row[:3] for row in rows]
        )
        study.score_left, study.score_right = breasts.get("L"), breasts.get("R")
        breast_threshold = thresholds_for(version.metrics, version.threshold, study.source_kind)["breast"]
        _, study.exam_flag = flag_exam(breasts, breast_threshold)
        study.exam_model = version
    pending = Image.objects.filter(study=study).exclude(status__in=[Image.Status.PREDICTED, Image.Status.FAILED])
    if study.status == Study.Status.NEW and not pending.exists() and study.images.exists():
        study.status = Study.Status.PREDICTED
    study.save(
        update_fields=[
            "score_left",
            "score_right",
            "exam_score",
            "exam_flag",
            "exam_model",
            "source_kind",
            "status",
            "updated",
        ]
    )
    if version is not None and before != (version.pk, study.score_left, study.score_right, study.exam_score):
        export.queue_ai_result(study)  # a new or changed AI result: its SR goes to the PACS
    return study


# --- the sweeper ---------------------------------------------------------------------------------


def sweep(now=None) -> dict[str, int]:
    """Re-queue work a dead worker or a down broker left behind; fail what has been tried too often.

    The attempt limit applies to running and queued rows alike.
    """
    now = now or timezone.now()
    limit = settings.PORTAL_PREDICTION_MAX_ATTEMPTS
    stale = now - timedelta(seconds=settings.PORTAL_PREDICTION_STALE_SECONDS)
    counts = {"requeued": 0, "resent": 0, "failed": 0, "enqueued_images": 0}
    resend: list[int] = []
    failed: list[int] = []
    for row in Prediction.objects.filter(status=Prediction.Status.RUNNING, updated__lt=stale):
        if row.attempts >= limit:
            _fail(row, f"gave up after {row.attempts} attempts: the worker stopped or timed out each time")
            failed.append(row.pk)
        elif Prediction.objects.filter(pk=row.pk, status=Prediction.Status.RUNNING, updated__lt=stale).update(
            status=Prediction.Status.QUEUED, updated=now
        ):
            resend.append(row.pk)
            counts["requeued"] += 1
    waiting = Prediction.objects.filter(
        status=Prediction.Status.QUEUED,
        updated__lt=now - timedelta(seconds=settings.PORTAL_PREDICTION_REQUEUE_SECONDS),
    ).select_related("model_version")
    for row in waiting:
        if row.attempts >= limit:
            _fail(row, f"gave up after {row.attempts} attempts")
            failed.append(row.pk)
        elif not row.model_version.servable:
            _fail(row, row.model_version.load_error)
            failed.append(row.pk)
        elif Prediction.objects.filter(pk=row.pk, status=Prediction.Status.QUEUED).update(updated=now):
            resend.append(row.pk)
            counts["resent"] += 1
    counts["failed"] = len(failed)
    _update_studies_of(failed)
    for pk in resend:
        dispatch.after_commit(PREDICT, pk)
    version = champion()
    if version is not None and version.servable:
        counts["enqueued_images"] = len(
            enqueue_images(list(_waiting_images(version).values_list("pk", flat=True)), version=version)
        )
    if any(counts.values()):
        log.info("sweep: %s", counts)
    return counts


def recover_after_restart(started) -> dict[str, int]:
    """Embedded mode, at start-up: predictions run in the web process, so a row still `running` from before
    `started` (when this start-up began, before the web server) was left by a process that was killed. Each
    goes back to the queue at once, not after the stale limit (or fails at the attempt limit), and every queued
    row is sent again: a resend or a re-predict of its image would otherwise queue nothing."""
    orphans = list(
        Prediction.objects.filter(status=Prediction.Status.RUNNING, updated__lt=started).values_list("pk", flat=True)
    )
    requeued = _give_back(orphans, "the server stopped while predicting")
    _update_studies_of(sorted(set(orphans) - set(requeued)))
    waiting = sorted(
        set(requeued)
        | set(
            Prediction.objects.filter(status=Prediction.Status.QUEUED, updated__lt=started).values_list("pk", flat=True)
        )
    )
    for pk in waiting:
        dispatch.send(PREDICT, pk)
    counts = {"requeued": len(requeued), "failed": len(orphans) - len(requeued), "sent": len(waiting)}
    if any(counts.values()):
        log.info("recovered after a restart: %s", counts)
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
