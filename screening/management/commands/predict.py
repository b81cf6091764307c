"""python manage.py predict (--all | --study ID ... | --pending) [--wait]: re-run inference with the champion."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from screening.ai.services.predictions import enqueue_images, rerun_studies, wait_for
from screening.ai.services.registry import serving_champion
from screening.errors import PortalError
from screening.models import Image, Prediction, Study


class Command(BaseCommand):
    help = "Queue predictions by the champion model; old predictions keep their model versions."

    def add_arguments(self, parser):
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--all", action="store_true", help="every image")
        which.add_argument("--study", type=int, nargs="+", help="study ids")
        which.add_argument("--pending", action="store_true", help="images without a prediction by the champion")
        parser.add_argument("--wait", type=float, default=0, help="wait up to this many seconds for the results")

    def handle(self, *args, all: bool, study: list[int] | None, pending: bool, wait: float, **options):
        try:
            version = serving_champion()
        except PortalError as exc:
            raise CommandError(exc.message) from None
        if study:
            studies = Study.objects.filter(pk__in=study)
            if studies.count() != len(set(study)):
                raise CommandError("unknown study id")
            queued = rerun_studies(studies)
        else:
            images = Image.objects.all()
            if pending:
                images = images.exclude(predictions__model_version=version)
            queued = enqueue_images(list(images.values_list("pk", flat=True)))
        self.stdout.write(f"queued {len(queued)} predictions by model {version.name}")
        if wait and queued:
            finished = wait_for(queued, timeout=wait)
            done = Prediction.objects.filter(pk__in=queued, status="done").count()
            failed = Prediction.objects.filter(pk__in=queued, status="failed").count()
            self.stdout.write(f"{done} done, {failed} failed" + ("" if finished else ", the rest still waiting"))
