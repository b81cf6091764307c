"""The worker's model: one ml.inference.Predictor per process and device, reloaded when the version changes.

Called only from the prediction service in a worker (and, in embedded mode, by the
process that runs tasks): this is where torch enters the portal, inside
`predictor_for`. Only worker code imports it (`screening.ai.services.predicting`): the web process
never reaches torch (import-linter's web-without-torch contract).
"""

from __future__ import annotations

import logging
import threading

from django.conf import settings

from screening.ai.services.registry import checkpoint_path
from screening.models import ModelVersion

log = logging.getLogger(__name__)
_lock = threading.Lock()
_loaded: tuple[int, object] | None = None  # (ModelVersion id, Predictor): one model in memory at a time


class Unservable(Exception):
    """The checkpoint is there but cannot be loaded (corrupt, wrong format): retrying will not help."""


def predictor_for(version: ModelVersion):
    """The Predictor of this model version, loaded once per process; a promotion loads the new one.

    Raises FileNotFoundError while the checkpoint file is missing (storage may not be
    synced yet: worth a limited retry) and Unservable when the file cannot be loaded.
    """
    global _loaded
    with _lock:
        if _loaded is None or _loaded[0] != version.pk:
            path = checkpoint_path(version)
            if not path.is_file():
                raise FileNotFoundError(f"the checkpoint of model {version.name} is missing ({version.checkpoint})")
            import torch

            from ml.inference import Predictor

            try:
                predictor = Predictor.load(path, device=settings.PORTAL_INFERENCE_DEVICE or None)
            except (OSError, MemoryError, torch.cuda.OutOfMemoryError):
                raise  # the file system or this worker's memory, not the checkpoint: transient
            except Exception as exc:  # torch and pickle raise many types for a damaged or foreign file
                first_line = (str(exc).strip().splitlines() or [""])[0][:300]
                raise Unservable(
                    f"the checkpoint of model {version.name} cannot be loaded: {type(exc).__name__}"
                    + (f": {first_line}" if first_line else "")
                ) from exc
            log.info("loaded model version %s on %s", version.pk, predictor.device)
            _loaded = (version.pk, predictor)
        return _loaded[1]
