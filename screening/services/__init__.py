"""Every write in the portal. Views, API, commands and tasks call these; none re-implements them."""

from .audit import client_ip, record_event
from .ingest import IngestResult, ingest_file
from .models import champion, ensure_champion, promote_version, register_checkpoint
from .predictions import enqueue_images, rerun_studies, sweep, update_exam_scores

__all__ = [
    "IngestResult",
    "champion",
    "client_ip",
    "enqueue_images",
    "ensure_champion",
    "ingest_file",
    "promote_version",
    "record_event",
    "register_checkpoint",
    "rerun_studies",
    "sweep",
    "update_exam_scores",
]
