"""python manage.py register_model [PATH] [--promote]: add a checkpoint to the model registry."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from screening.services import ensure_champion, register_checkpoint


class Command(BaseCommand):
    help = "Register a checkpoint (default: make sure a champion exists, registering the shipped baseline)."

    def add_arguments(self, parser):
        parser.add_argument(
            "path", nargs="?", help="checkpoint file; omit to ensure the shipped baseline is registered"
        )
        parser.add_argument("--name", help="version name (default: file name + hash)")
        parser.add_argument("--promote", action="store_true", help="make it the champion")

    def handle(self, *args, path: str | None, name: str | None, promote: bool, **options):
        try:
            version = register_checkpoint(path, name=name, promote=promote) if path else ensure_champion()
        except (OSError, ValueError, KeyError) as exc:
            raise CommandError(f"cannot register {path or 'the shipped baseline'}: {exc}") from None
        self.stdout.write(f"model {version.name}: {version.status}, operating point {version.threshold:.3f}")
