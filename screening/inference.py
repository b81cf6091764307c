"""The worker's model: one ml.inference.Predictor per process and device, reloaded when the version changes.

Imported only by Celery tasks (and, in embedded mode, by the process that runs
them): this is where torch enters the portal.
"""

from __future__ import annotations

import logging
import threading

from django.conf import settings

from .models import ModelVersion
from .services.models import checkpoint_path

log = logging.getLogger(__name__)
_lock = threading.Lock()
_loaded: tuple[int, object] | None = None  # (ModelVersion id, Predictor): one model in memory at a time


def predictor_for(version: ModelVersion):
    """The Predictor of this model version, loaded once per process; a promotion loads the new one."""
    global _loaded
    with _lock:
        if _loaded is None or _loaded[0] != version.pk:
            from ml.inference import Predictor

            predictor = Predictor.load(checkpoint_path(version), device=settings.PORTAL_INFERENCE_DEVICE or None)
            log.info("loaded model version %s on %s", version.pk, predictor.device)
            _loaded = (version.pk, predictor)
        return _loaded[1]
