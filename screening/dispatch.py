"""The one way services queue work: after the transaction commits, a task sent by its name.

Services never import screening.tasks (tasks import services), so imports flow one
way. Sending by name through the Celery app keeps embedded mode working: with
`task_always_eager` the task runs in this process, right after the commit.
"""

from __future__ import annotations

import logging

from celery import current_app
from django.db import transaction

log = logging.getLogger(__name__)


def after_commit(task_name: str, *args) -> None:
    """Send `task_name(*args)` once the current transaction commits (at once outside a transaction)."""
    transaction.on_commit(lambda: send(task_name, *args))


def send(task_name: str, *args) -> bool:
    """Send a task now. A broker that is down is logged, not raised: the sweeper resends what stays queued."""
    task = _task(task_name)  # an unknown name is a bug: it raises
    try:
        task.apply_async(args=args)
    except Exception as exc:  # kombu raises OperationalError and friends when the broker is down
        log.warning("could not send %s%s (%s); the sweeper will resend it", task_name, list(args), exc)
        return False
    return True


def _task(name: str):
    if name not in current_app.tasks:
        current_app.loader.import_default_modules()  # autodiscovery: a web process imports tasks on its first send
    return current_app.tasks[name]
