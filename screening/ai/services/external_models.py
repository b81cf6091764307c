"""External models (issue 20): an admin registers an ONNX or TorchScript model with its manifest (ml.manifest).

The web process checks the manifest (no torch), stores both files under the model folder and queues a
training run of kind "external". The training worker then loads the model and checks it (ml.external:
loadable, output shapes, finite outputs, within the inference budget), registers it as a challenger,
scores it and the champion on the locked validation women and applies the same promotion rule as a
nightly candidate (screening.ai.services.evaluation). Every step is audited on the run; a refused model leaves no
version and no file behind, and the run says why.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

from django.conf import settings
from django.db import transaction

from ml.manifest import ExternalModelError, parse_manifest
from screening import dispatch
from screening.audit import actions
from screening.audit.services import record_event
from screening.errors import Conflict, PortalError
from screening.models import ModelVersion, TrainingRun

MAX_MODEL_BYTES = 1 << 30  # 1 GiB
MAX_MANIFEST_BYTES = 1 << 20
EXTERNAL = "external"


def model_folder() -> Path:
    return Path(getattr(settings, "PORTAL_MODEL_DIR", Path(settings.MEDIA_ROOT) / "models"))


def submit(*, manifest, model, name: str = "", note: str = "", user=None, ip_address: str | None = None):
    """Check the manifest, store the two files and queue the run that validates and challenges the model.

    `manifest` and `model` are uploaded files (Django UploadedFile or any object with read/chunks/size).
    Raises PortalError (400) for a bad manifest or file, Conflict (409) while another run is busy.
    """
    if manifest is None or model is None:
        raise PortalError(
            "send the manifest (JSON) and the model file", field="manifest" if manifest is None else "model"
        )
    if manifest.size > MAX_MANIFEST_BYTES:
        raise PortalError("the manifest is larger than 1 MB", field="manifest")
    if model.size == 0 or model.size > MAX_MODEL_BYTES:
        raise PortalError("the model file is empty or larger than 1 GiB", field="model")
    try:
        spec = parse_manifest(manifest.read())
    except ExternalModelError as exc:
        raise PortalError(str(exc), field="manifest") from None
    name = (name or "").strip()[:80] or f"external-{uuid.uuid4().hex[:8]}"
    if ModelVersion.objects.filter(name=name).exists():
        raise Conflict(f"a model version named {name!r} exists already")
    suffix = ".onnx" if spec["format"] == "onnx" else ".pt"
    folder = model_folder() / "external" / uuid.uuid4().hex
    folder.mkdir(parents=True, exist_ok=False)
    try:
        with open(folder / f"model{suffix}", "wb") as fh:
            for chunk in model.chunks():
                fh.write(chunk)
        spec["file"] = f"model{suffix}"
        (folder / "model.json").write_text(json.dumps(spec, indent=1))
        with transaction.atomic():
            if (
                TrainingRun.objects.select_for_update()
                .filter(status__in=[TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING])
                .exists()
            ):
                raise Conflict("a training or registration run is queued or running; try again when it ends")
            run = TrainingRun.objects.create(
                triggered_by=EXTERNAL,
                data_summary={"external": {"manifest": str(folder / "model.json"), "name": name, "note": note[:500]}},
            )
            record_event(
                action=actions.MODEL_UPLOAD,
                user=user,
                obj=run,
                ip_address=ip_address,
                detail={"name": name, "format": spec["format"], "bytes": model.size},
            )
            dispatch.after_commit("screening.tasks.retrain", run.pk, EXTERNAL)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return run
