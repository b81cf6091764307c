"""python manage.py retrain [--here] [--release-stuck]: start a training run on the confirmed labels."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from screening.ai.services import training, training_run
from screening.errors import PortalError
from screening.models import TrainingRun


class Command(BaseCommand):
    help = (
        "Queue a training run for the training worker (or run it in this process with --here). "
        "The candidate replaces the champion only if it is not worse on the locked validation women."
    )

    def add_arguments(self, parser):
        parser.add_argument("--here", action="store_true", help="train in this process instead of the training queue")
        parser.add_argument(
            "--release-stuck", action="store_true", help="only fail runs whose worker stopped, then exit"
        )

    def handle(self, *args, here: bool, release_stuck: bool, **options):
        if release_stuck:
            released = training.release_stuck_runs()
            self.stdout.write(f"released {len(released)} stuck runs {released or ''}".rstrip())
            return
        try:
            run = training.trigger_run(trigger="command", enqueue=not here)
        except PortalError as exc:
            raise CommandError(exc.message) from None
        if here:
            training_run.run_training(run_id=run.pk, trigger="command")
        run = TrainingRun.objects.select_related("candidate").get(pk=run.pk)
        if run.status in (TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING):
            self.stdout.write(f"training run #{run.pk} queued for the training worker")
            return
        if run.status != TrainingRun.Status.SUCCEEDED:
            raise CommandError(f"training run #{run.pk} {run.status}: {run.error}")
        candidate = run.candidate
        self.stdout.write(f"training run #{run.pk} succeeded in {(run.finished - run.started).total_seconds():.0f} s")
        self.stdout.write(f"candidate {candidate.name}: {candidate.status} ({candidate.note})")
