"""Embedded mode in tests: Celery tasks run in this process, where they are queued."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from celery.signals import task_prerun


@contextmanager
def tasks_in_process(counted_task: str) -> Iterator[Counter]:
    """Run every task eagerly (no broker, no sweeper); count the runs of `counted_task` per first argument."""
    from portal.celery import app

    runs: Counter = Counter()

    def count(sender=None, args=None, **kwargs):
        if sender is not None and sender.name == counted_task:
            runs[args[0]] += 1

    old = app.conf.task_always_eager
    app.conf.task_always_eager = True
    task_prerun.connect(count, weak=False)
    try:
        yield runs
    finally:
        task_prerun.disconnect(count)
        app.conf.task_always_eager = old
