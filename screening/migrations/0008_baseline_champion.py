"""There is always a champion: a fresh database serves the shipped baseline after `migrate` alone.

The row comes from the baseline's sidecar (ml/weights/baseline.json, written from the
checkpoint by `register_model ml/weights/baseline.pt --sidecar`), so migrating never
imports torch. A database that already has a champion is left as it is.
"""

import json
from pathlib import Path

from django.conf import settings
from django.db import migrations
from django.utils import timezone

SIDECAR = Path(settings.BASE_DIR) / "ml" / "weights" / "baseline.json"


def register_baseline(apps, schema_editor):
    ModelVersion = apps.get_model("screening", "ModelVersion")
    if ModelVersion.objects.filter(status="champion").exists():
        return
    fields = json.loads(SIDECAR.read_text())
    version = ModelVersion.objects.filter(name=fields["name"]).first() or ModelVersion(
        **{key: fields[key] for key in ("name", "checkpoint", "threshold", "metrics", "note")}
    )
    version.status = "champion"
    version.promoted_at = timezone.now()
    version.save()


class Migration(migrations.Migration):
    dependencies = [
        ("screening", "0007_append_only_records"),
    ]

    operations = [
        migrations.RunPython(register_baseline, migrations.RunPython.noop),
    ]
