"""Every write in the portal. Views, API, commands and tasks call these; none re-implements them."""

from screening.services.audit import client_ip, record_event
from screening.services.ingest import IngestResult, ingest_file
from screening.services.models import champion, ensure_champion, promote_version, register_checkpoint
from screening.services.predictions import enqueue_images, rerun_studies, sweep, update_exam_scores
from screening.services.renditions import full_resolution_png
from screening.services.reviews import FindingInput, case_opened, review_submit

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
