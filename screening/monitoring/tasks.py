"""Celery entry points of monitoring (queue "export", beside the other non-GPU background work). Thin."""

from __future__ import annotations

from celery import shared_task

from screening.monitoring import services


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=3600, soft_time_limit=3500)
def run_monitoring(run_id: int) -> str:
    """An admin's on-demand run."""
    try:
        return services.run_monitoring(run_id)
    except Exception:
        services.fail_run(run_id, "the run stopped on an internal error (see the worker's log)")
        raise


@shared_task(acks_late=True, time_limit=4 * 3600)
def nightly_monitoring() -> list[int]:
    """Beat, nightly: drift and subgroup performance of every monitored model version."""
    return services.run_nightly()
