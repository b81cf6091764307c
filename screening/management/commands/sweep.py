"""python manage.py sweep [--recover] [--every SECONDS]: re-queue stuck work, once or on a timer.

Production runs the same sweep from Celery beat (sweep_stuck_predictions, release_expired_locks). Embedded
mode has no beat: `scripts/run.sh` starts this command with `--recover --every 60` before the web server, so
predictions a killed server left `running` are recovered at start-up and anything stuck later is swept.
"""

from __future__ import annotations

import logging
import time

from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections
from django.utils import timezone

from screening.ai.services import predictions
from screening.tasks import release_expired_locks, sweep_stuck_predictions

log = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Re-queue stuck predictions, renditions and SR sends, release expired case locks; once or every N seconds."

    def add_arguments(self, parser):
        parser.add_argument(
            "--recover",
            action="store_true",
            help="first re-queue every prediction left running from before this start (embedded mode: the "
            "web server predicts in-process, so those were left by a server that was killed)",
        )
        parser.add_argument("--every", type=float, default=0, help="sweep again every this many seconds (0: once)")

    def handle(self, *args, recover: bool, every: float, **options):
        if every < 0:
            raise CommandError("--every must be 0 (once) or a number of seconds")
        started = timezone.now()
        if recover:
            self.stdout.write(f"recovered: {predictions.recover_after_restart(started)}")
        while True:
            try:
                swept = sweep_stuck_predictions()
                released = release_expired_locks()
            except Exception:
                if not every:
                    raise
                # SQLite busy with the web server's write, a database restarting: the next tick tries again
                log.exception("the sweep failed; trying again in %s s", every)
            else:
                if any(swept.values()) or released:
                    self.stdout.write(f"swept: {swept}; expired locks released: {released}")
            if not every:
                return
            close_old_connections()  # a database restarted meanwhile: the next tick reconnects
            time.sleep(every)
