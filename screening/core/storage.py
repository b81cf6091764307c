"""Removing stored files (originals, renditions, heatmaps, SRs) once their rows are gone or never were."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.core.files.storage import default_storage
from django.db import transaction

log = logging.getLogger(__name__)


def delete_stored(names: Iterable[str]) -> None:
    """Delete each stored file on its own: one that cannot go is logged and the others still go, and a cleanup
    failure never masks the outcome the caller is reporting. A missing file is no error."""
    for name in names:
        if not name:
            continue
        try:
            default_storage.delete(name)
        except Exception:
            log.exception("could not delete the stored file %s", name)


def delete_stored_after_commit(names: Iterable[str]) -> None:
    """Delete the files once the transaction that dropped their rows commits (never while a rollback could
    still bring the rows back)."""
    names = [name for name in names if name]
    if names:
        transaction.on_commit(lambda: delete_stored(names))
