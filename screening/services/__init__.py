"""Every write in the portal. Views, API, commands and tasks call these; none re-implements them."""

from .audit import client_ip, record_event
from .ingest import IngestResult, ingest_file
from .models import champion, ensure_champion, promote_version, register_checkpoint
from .predictions import enqueue_images, rerun_studies, sweep, update_exam_scores
from .renditions import full_resolution_png
from .reviews import FindingInput, case_opened, review_submit

__all__ = [
    "FindingInput",
    "IngestResult",
    "case_opened",
    "review_submit",
    "champion",
    "client_ip",
    "enqueue_images",
    "ensure_champion",
    "full_resolution_png",
    "ingest_file",
    "promote_version",
    "record_event",
    "register_checkpoint",
    "rerun_studies",
    "sweep",
    "update_exam_scores",
]
