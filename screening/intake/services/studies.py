"""Studies as a whole: assignment to a reader, the site they belong to, and deletion (admins). All audited."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.db import transaction

from screening.audit import actions
from screening.audit.services import record_event
from screening.core.storage import delete_stored_after_commit
from screening.errors import PortalError
from screening.intake.services.renditions import full_resolution_name, preview_name
from screening.models import CadReport, DicomExport, Image, Prediction, Study
from screening.sites.selectors import clean_site

log = logging.getLogger(__name__)

REASON_MAX_LENGTH = 1000


@transaction.atomic
def assign_studies(*, studies: Iterable[Study], assignee, user, ip_address: str | None = None) -> int:
    """Assign studies to a reader (None: unassign); each change is audited. Returns how many changed."""
    changed = 0
    for study in Study.objects.select_for_update().filter(pk__in=[s.pk for s in studies]).order_by("pk"):
        if study.assigned_to_id == (assignee.pk if assignee is not None else None):
            continue
        study.assigned_to = assignee
        study.save(update_fields=["assigned_to", "updated"])
        record_event(
            action=actions.STUDY_ASSIGN,
            user=user,
            study=study,
            obj=study,
            ip_address=ip_address,
            detail={"assigned_to": assignee.get_username() if assignee is not None else None},
        )
        changed += 1
    return changed


@transaction.atomic
def move_to_site(*, study: Study, site: str, user, ip_address: str | None = None) -> bool:
    """File a study under another site (whose reading policy then governs it); audited. True when it moved."""
    site = clean_site(site)
    locked = Study.objects.select_for_update().get(pk=study.pk)
    if locked.site == site:
        return False
    record_event(
        action=actions.STUDY_SITE_CHANGE,
        user=user,
        study=locked,
        obj=locked,
        ip_address=ip_address,
        detail={"from": locked.site, "to": site},
    )
    locked.site = study.site = site
    locked.save(update_fields=["site", "updated"])
    return True


def stored_files_of(study: Study) -> list[str]:
    """Storage names of every file the study's rows own: originals, renditions, previews, full-resolution PNGs,
    heatmaps."""
    names: list[str] = []
    for original, rendition, sha256 in Image.objects.filter(study=study).values_list("original", "rendition", "sha256"):
        # the preview and full-resolution PNG of an image rendered before they were made: may not exist
        names += [original, rendition, preview_name(sha256), full_resolution_name(sha256)]
    names += Prediction.objects.filter(image__study=study).exclude(heatmap="").values_list("heatmap", flat=True)
    names += DicomExport.objects.filter(study=study).exclude(sr_file="").values_list("sr_file", flat=True)
    names += CadReport.objects.filter(study=study).values_list("original", flat=True)  # vendors' CAD SRs
    return list(dict.fromkeys(name for name in names if name))


@transaction.atomic
def delete_study(*, study: Study, user, reason: str, ip_address: str | None = None) -> None:
    """Delete a study with its images, predictions, reviews and findings, for a stated reason.

    The audit trail stays (events keep the study id) and gains a `study_delete` event that
    holds the reason and what was removed, never who the patient was. The stored files go
    once the transaction commits, so a rollback leaves rows and files as they were.
    """
    reason = (reason or "").strip()
    if not reason:
        raise PortalError("give the reason for deleting this study", field="reason")
    if len(reason) > REASON_MAX_LENGTH:
        raise PortalError(f"the reason must be at most {REASON_MAX_LENGTH} characters", field="reason")
    study = Study.objects.select_for_update().get(pk=study.pk)
    names = stored_files_of(study)
    record_event(
        action=actions.STUDY_DELETE,
        user=user,
        study=study,
        obj=study,
        ip_address=ip_address,
        detail={
            "reason": reason,
            "status": study.status,
            "images": study.images.count(),
            "reviews": study.reviews.count(),
            "predictions": Prediction.objects.filter(image__study=study).count(),
        },
    )
    study.delete()
    delete_stored_after_commit(names)
