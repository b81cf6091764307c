"""Every queue a task is routed to has a worker in the production shape (the render queue is new)."""

from __future__ import annotations

from pathlib import Path

import yaml
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]


def test_every_routed_queue_is_consumed_by_a_compose_service():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    commands = " ".join(str(service.get("command", "")) for service in services.values())
    queues = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    assert "render" in queues and settings.CELERY_TASK_ROUTES["screening.tasks.render_image"] == {"queue": "render"}
    assert {queue for queue in queues if f"-Q {queue}" not in commands} == set()
