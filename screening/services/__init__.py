"""Every write in the portal. Views, API, commands and tasks call these; none re-implements them."""

from .audit import client_ip, record_event
from .ingest import IngestResult, ingest_file

__all__ = ["IngestResult", "client_ip", "ingest_file", "record_event"]
