"""Celery entry point of research exports (queue "export"). Thin."""

from __future__ import annotations

from celery import shared_task

from screening.research_export import services


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=6 * 3600, soft_time_limit=6 * 3600 - 60)
def build_export(export_id: int) -> str:
    try:
        return services.build_export(export_id)
    except Exception:
        services.fail_export(export_id, "the export stopped on an internal error (see the worker's log)")
        raise
