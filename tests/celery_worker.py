"""Real Celery worker processes for the tests about queues (inference, training)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[1]

needs_worker_services = pytest.mark.skipif(
    not os.environ.get("REDIS_URL") or not os.environ.get("DATABASE_URL", "").startswith("postgres"),
    reason="needs REDIS_URL and a PostgreSQL DATABASE_URL (workers cannot share an in-memory SQLite test database)",
)


class WorkerProcess:
    """`celery -A portal worker -Q <queue>` in its own process group, on the test database and media folder."""

    def __init__(
        self,
        media_root: Path,
        queue: str,
        name: str,
        *,
        broker_url: str | None = None,
        settings_module: str | None = None,
    ):
        db = connection.settings_dict
        env = {
            **os.environ,
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}",
            "REDIS_URL": broker_url or django_settings.CELERY_BROKER_URL,
            "PORTAL_MEDIA_ROOT": str(media_root),
            "PORTAL_VAR_DIR": str(media_root.parent / "var"),
        }
        if settings_module:
            env["DJANGO_SETTINGS_MODULE"] = settings_module
        env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        self.log = media_root.parent / f"{name}.log"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "portal",
                "worker",
                "-Q",
                queue,
                "-c",
                "1",
                "--prefetch-multiplier",
                "1",
                "-n",
                f"{name}@%h",
                "--without-gossip",
                "--without-mingle",
                "-l",
                "info",
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


def purge(*queues: str) -> None:
    for queue in queues:
        subprocess.run(
            [sys.executable, "-m", "celery", "-A", "portal", "purge", "-f", "-Q", queue],
            cwd=ROOT,
            capture_output=True,
            check=False,
        )


def wait_until(condition, timeout: float = 120, every: float = 0.25, on_tick=None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if on_tick:
            on_tick()
        time.sleep(every)
    return False
