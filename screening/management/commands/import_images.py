"""python manage.py import_images DIR [--labels images.csv]: ingest a folder, recursively."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from screening.errors import PortalError
from screening.intake.services.ingest import ingest_file


class Command(BaseCommand):
    help = "Ingest every file under DIR (DICOM or images) through the same path as uploads."

    def add_arguments(self, parser):
        parser.add_argument("directory", type=Path)
        parser.add_argument(
            "--labels", type=Path, help="CSV with image_id, patient_id, laterality, view (mias format) for image files"
        )
        parser.add_argument("--patient-id", default="", help="patient id for image files not listed in --labels")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")

    def handle(self, *args, directory: Path, labels: Path | None, patient_id: str, no_progress: bool, **options):
        if not directory.is_dir():
            raise CommandError(f"{directory} is not a directory")
        metadata = self._read_labels(labels) if labels else {}
        files = sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.startswith("."))
        accepted = duplicates = 0
        rejected: list[tuple[str, str]] = []
        for path in tqdm(files, unit="file", disable=no_progress or not files, file=self.stderr._out):
            meta = metadata.get(path.stem, {})
            try:
                with path.open("rb") as fh:
                    result = ingest_file(
                        file=fh,
                        filename=path.name,
                        patient_id=meta.get("patient_id", patient_id),
                        laterality=meta.get("laterality", ""),
                        view=meta.get("view", ""),
                        via="import_images",
                    )
            except PortalError as exc:
                rejected.append((str(path.relative_to(directory)), exc.message))
                continue
            if result.created:
                accepted += 1
            else:
                duplicates += 1
        self.stdout.write(
            f"{len(files)} files: {accepted} accepted, {duplicates} already present, {len(rejected)} rejected"
        )
        for reason, count in Counter(r for _, r in rejected).most_common():
            self.stdout.write(f"  {count} x {reason}")
        for name, reason in rejected:
            self.stdout.write(f"  rejected {name}: {reason}")

    def _read_labels(self, path: Path) -> dict[str, dict[str, str]]:
        try:
            with path.open(newline="") as fh:
                rows = list(csv.DictReader(fh))
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc}") from None
        if rows and not {"image_id", "patient_id"} <= set(rows[0]):
            raise CommandError(f"{path} needs at least the columns image_id and patient_id")
        return {row["image_id"]: row for row in rows}
