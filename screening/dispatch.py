"""The one way services queue work: after the transaction commits, a task sent by its name.

Services never import screening.tasks (tasks import services), so imports flow one
way. Sending by name through the Celery app keeps embedded mode working: with
`task_always_eager` the task runs in this process, right after the commit.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from celery import current_app
from django.db import connections, transaction

log = logging.getLogger(__name__)
_local = threading.local()
_background: ThreadPoolExecutor | None = None
_background_lock = threading.Lock()


@contextmanager
def off_the_callers_thread() -> Iterator[None]:
    """Tasks sent within this block run on a background thread when tasks run in-process (embedded mode),
    not in the caller's thread: the DICOM receiver answers C-STORE as soon as the instance is stored,
    whatever the render and prediction take afterwards. With a broker nothing changes (the tasks are queued)."""
    _local.background = True
    try:
        yield
    finally:
        _local.background = False


def _executor() -> ThreadPoolExecutor:
    global _background
    with _background_lock:
        if _background is None:  # one thread: in-process work runs one task at a time, as a worker would
            _background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedded-tasks")
        return _background


def _run_in_background(task_name: str, args: tuple) -> None:
    try:
        _task(task_name).apply_async(args=args)
    except Exception:  # eager tasks record their own failures; this only keeps the thread alive
        log.exception("in-process task %s%s failed", task_name, list(args))
    finally:
        connections.close_all()


def wait_for_background_tasks() -> None:
    """Run every background task sent so far to its end (tests; a clean shutdown)."""
    _executor().submit(lambda: None).result()


def after_commit(task_name: str, *args) -> None:
    """Send `task_name(*args)` once the current transaction commits (at once outside a transaction)."""
    transaction.on_commit(lambda: send(task_name, *args))


def send(task_name: str, *args) -> bool:
    """Send a task now. A broker that is down is logged, not raised: the sweeper resends what stays queued."""
    task = _task(task_name)  # an unknown name is a bug: it raises
    if getattr(_local, "background", False) and current_app.conf.task_always_eager:
        _executor().submit(_run_in_background, task_name, args)
        return True
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
