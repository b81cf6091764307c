"""Celery entry points. Thin: ids in, services called. Routed to queues in settings.

Tasks import services; services never import tasks (they send tasks by name through
screening.dispatch), so imports flow one way.
"""

from __future__ import annotations

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import InterfaceError, OperationalError

from screening.ai.services import predicting, predictions, training, training_run
from screening.exchange.services import export, hl7_export
from screening.intake.services import renditions
from screening.reading.services import reading

log = logging.getLogger(__name__)

# Worth retrying: the database or storage hiccuped, or a prediction went back to the queue (TryAgain).
TRANSIENT = (predicting.TryAgain, OperationalError, InterfaceError, OSError, ConnectionError)


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=3,
    soft_time_limit=settings.PORTAL_PREDICTION_SOFT_TIME_LIMIT,
    time_limit=settings.PORTAL_PREDICTION_SOFT_TIME_LIMIT + 30,
)
def predict_image(self, prediction_id: int) -> int:
    """Predict one image (and whatever else is waiting for the same model, as a batch)."""
    try:
        return predicting.run_prediction(prediction_id)
    except SoftTimeLimitExceeded:
        predictions.fail_prediction(prediction_id, f"timed out after {settings.PORTAL_PREDICTION_SOFT_TIME_LIMIT} s")
        return 0
    except TRANSIENT as exc:
        if self.request.retries >= self.max_retries:
            predictions.fail_prediction(prediction_id, f"gave up after {self.max_retries} retries: {exc}")
            return 0
        raise self.retry(exc=exc, countdown=2 ** (self.request.retries + 1)) from exc


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=3, soft_time_limit=120, time_limit=150)
def render_image(self, image_id: int) -> str:
    """Make an image's display and full-resolution PNGs (queue "render"); undecodable pixels fail the image."""
    try:
        return renditions.render_image(image_id)
    except SoftTimeLimitExceeded:
        renditions.fail_image(image_id, "rendering timed out after 120 s")
        return renditions.FAILED
    except (OperationalError, InterfaceError, OSError, ConnectionError) as exc:
        # Each try counts against PORTAL_RENDER_MAX_ATTEMPTS; past the retries the sweeper sends it again.
        raise self.retry(exc=exc, countdown=2 ** (self.request.retries + 1)) from exc


@shared_task(acks_late=True, time_limit=300)
def predict_waiting_images(version_id: int) -> int:
    """After a promotion: predict the images that no model could predict so far with the new champion."""
    return len(predictions.enqueue_waiting_images(version_id))


@shared_task(acks_late=True, time_limit=300)
def sweep_stuck_predictions() -> dict[str, int]:
    """Periodic (beat): re-queue what a dead worker or a down broker left behind; release stuck training runs."""
    training.release_stuck_runs()
    export.sweep()  # SRs whose send task was lost
    hl7_export.sweep()  # HL7 results likewise
    renditions.sweep()  # images a dead render worker left without a rendition
    return predictions.sweep()


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=settings.PORTAL_TRAINING_TIME_LIMIT)
def retrain(run_id: int | None = None, trigger: str = "schedule") -> int | None:
    """Nightly (beat) or on demand: train a candidate on confirmed labels and promote it if not worse."""
    return training_run.run_training(run_id=run_id, trigger=trigger)


@shared_task(
    bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None, time_limit=300, soft_time_limit=240
)
def export_study_sr(self, export_id: int) -> str:
    """Send one SR (AI result or decision) to one DICOM destination; retried with backoff, bounded by the service."""
    try:
        return export.send_export(export_id)
    except SoftTimeLimitExceeded:
        export.fail_export(export_id, "timed out while sending")
        return "failed"
    except export.TryAgain as exc:
        if self.request.is_eager:  # embedded mode: the retry waits in a timer thread, not in the request
            export.retry_in_background(export_id, export.backoff(export_id))
            return "pending"
        raise self.retry(exc=exc, countdown=min(5 * 2**self.request.retries, 600)) from exc


@shared_task(
    bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None, time_limit=300, soft_time_limit=240
)
def send_hl7_result(self, export_id: int) -> str:
    """Send one final decision to one HL7 destination (ORU^R01 over MLLP); retried with backoff, bounded by
    the service."""
    try:
        return hl7_export.send_result(export_id)
    except SoftTimeLimitExceeded:
        hl7_export.fail_export(export_id, "timed out while sending")
        return "failed"
    except hl7_export.TryAgain as exc:
        if self.request.is_eager:  # embedded mode: the retry waits in a timer thread, not in the request
            hl7_export.retry_in_background(export_id, hl7_export.backoff(export_id))
            return "pending"
        raise self.retry(exc=exc, countdown=min(5 * 2**self.request.retries, 600)) from exc


@shared_task(acks_late=True, time_limit=120)
def release_expired_locks() -> int:
    """Case locks past their time-out go, each audited (beat: every 5 minutes, migration 0014)."""
    return reading.release_expired_locks()


# Sub-domain tasks live beside their services; importing them here registers them with the worker.
from screening.monitoring import tasks as monitoring_tasks  # noqa: E402, F401
from screening.research_export import tasks as research_export_tasks  # noqa: E402, F401
