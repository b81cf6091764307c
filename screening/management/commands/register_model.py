"""python manage.py register_model [PATH] [--promote] [--sidecar]: add a checkpoint to the model registry."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from screening.ai.services.checkpoints import describe_checkpoint, register_checkpoint
from screening.ai.services.registry import ensure_champion


class Command(BaseCommand):
    help = "Register a checkpoint (default: make sure a champion exists, registering the shipped baseline)."

    def add_arguments(self, parser):
        parser.add_argument(
            "path", nargs="?", help="checkpoint file; omit to ensure the shipped baseline is registered"
        )
        parser.add_argument("--name", help="version name (default: file name + hash)")
        parser.add_argument("--note", default="", help="a note shown in the registry")
        parser.add_argument("--promote", action="store_true", help="make it the champion")
        parser.add_argument(
            "--sidecar",
            action="store_true",
            help="write the checkpoint's registry row to PATH with a .json suffix instead of registering it "
            "(how ml/weights/baseline.json is made: migrations and the web process read it without torch)",
        )

    def handle(self, *args, path: str | None, name: str | None, note: str, promote: bool, sidecar: bool, **options):
        try:
            if sidecar:
                if not path:
                    raise CommandError("--sidecar needs the checkpoint's path")
                fields = describe_checkpoint(path, name=name, note=note)
                out = Path(path).with_suffix(".json")
                out.write_text(json.dumps(fields, indent=2) + "\n")
                self.stdout.write(f"wrote {out} for model {fields['name']}")
                return
            version = register_checkpoint(path, name=name, promote=promote, note=note) if path else ensure_champion()
        except (OSError, ValueError, KeyError) as exc:
            raise CommandError(f"cannot register {path or 'the shipped baseline'}: {exc}") from None
        self.stdout.write(f"model {version.name}: {version.status}, operating point {version.threshold:.3f}")
