"""python manage.py seed_labels DIR --labels images.csv [--findings findings.csv]: labels as if read."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from screening.ai.services import seeding
from screening.ai.services.splits import assign_splits
from screening.errors import PortalError


class Command(BaseCommand):
    help = (
        "Import a labelled folder (mini-MIAS format) and record each woman's labels as a review by the "
        "'seed-labels' system user, so the base set can seed the training and locked validation pools."
    )

    def add_arguments(self, parser):
        parser.add_argument("directory", type=Path, help="folder with <image_id>.png (or images/<image_id>.png)")
        parser.add_argument("--labels", type=Path, required=True, help="images.csv: image_id, patient_id, label, ...")
        parser.add_argument("--findings", type=Path, help="findings.csv: image_id, abnormality, x, y, radius")
        parser.add_argument("--patients", help="only these patient ids (comma separated)")

    def handle(self, *args, directory: Path, labels: Path, findings: Path | None, patients: str | None, **options):
        images = directory / "images" if (directory / "images").is_dir() else directory
        if not images.is_dir() or not labels.exists():
            raise CommandError(f"{images} or {labels} does not exist")
        wanted = [p.strip() for p in patients.split(",") if p.strip()] if patients else None
        try:
            counts = seeding.seed_labels(images, labels, findings, patient_ids=wanted)
        except (PortalError, FileNotFoundError, ValueError, KeyError) as exc:
            raise CommandError(str(getattr(exc, "message", exc))) from None
        assigned = assign_splits()
        self.stdout.write(
            f"{counts['images']} images, {counts['reviews']} new reviews ({counts['already_reviewed']} studies already "
            f"read); pools: {assigned['train']} women to training, {assigned['validation']} to locked validation"
        )
