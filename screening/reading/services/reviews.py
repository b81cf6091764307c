"""Radiologists' decisions. A correction adds a version; nothing is overwritten.

Each decision fills a reading slot of its case (screening/reading/services/reading.py): the
reading policy decides whether it is the final decision or one of two blind reads.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from screening.audit import actions
from screening.audit.services import record_event
from screening.errors import Conflict, PortalError
from screening.exchange.services import export
from screening.models import CaseLock, Finding, Image, Review, Study
from screening.reading.rules import (
    FINAL_SLOTS,
    concordant,
    consensus_reached,
    corrected_read,
    next_slot,
    policy_of,
    reading_state,
)
from screening.reading.services.reading import release_lock

# A coherent decision: BI-RADS 1 (negative) and 2 (benign) are normal; 0 (recall), 3 (probably
# benign, short follow-up), 4 and 5 (suspicious) and 6 (known cancer) are abnormal. The database
# holds the same rule (check constraint review_decision_matches_birads).
BIRADS_FOR = {"normal": (1, 2), "abnormal": (0, 3, 4, 5, 6)}
BIRADS_TEXT = {"normal": "1 or 2", "abnormal": "0, 3, 4, 5 or 6"}


def _incoherent(decision: str, birads: int) -> str:
    """Why a decision and its BI-RADS category disagree, e.g. for normal with BI-RADS 5."""
    other = "a normal" if decision == "abnormal" else "an abnormal"
    return f"BI-RADS {birads} goes with {other} decision; {decision} allows BI-RADS {BIRADS_TEXT[decision]}"


@dataclass(frozen=True)
class FindingInput:
    image_id: int
    type: str
    x: float
    y: float
    width: float = 0.0
    height: float = 0.0


@transaction.atomic
def review_submit(
    *,
    study: Study,
    radiologist,
    decision: str,
    birads: int,
    density: str = "",
    note: str = "",
    findings: list[FindingInput] | None = None,
    ip_address: str | None = None,
) -> Review:
    """Record a read of a study as its next version, with findings, in the slot the reading policy gives.

    A correction (a new version of a read: one's own first read or final decision, or an arbitrator's of
    the final) starts from the findings of the read it corrects: `findings` None keeps them, a list
    (even empty) replaces them. A new read with `findings` None has none.

    The study is reported once the case has its final decision; a first read, or a second
    read that disagrees with the first (then awaiting arbitration), leaves it in review.
    Only the final decision goes to the PACS as an SR: a read sent before would unblind the
    other reader. Submitting releases the reader's lock on the case.
    """
    study = Study.objects.select_for_update().get(pk=study.pk)
    lock = CaseLock.objects.select_related("user").filter(study=study).first()
    now = timezone.now()
    if lock is not None and lock.user_id != radiologist.pk and lock.expires > now:
        raise Conflict(f"this case is being read by {lock.user.get_username()}")
    if decision not in Review.Decision.values:
        raise PortalError("decision must be normal or abnormal", field="decision")
    if not 0 <= int(birads) <= 6:
        raise PortalError("BI-RADS must be between 0 and 6", field="birads")
    if int(birads) not in BIRADS_FOR[decision]:
        raise PortalError(_incoherent(decision, int(birads)), field="birads")
    if density not in ("", *Review.Density.values):
        raise PortalError("density must be A, B, C or D", field="density")
    images = {image.pk: image for image in Image.objects.filter(study=study)}
    policy = policy_of(study)
    state = reading_state(study, list(Review.objects.filter(study=study)))
    slot = next_slot(study, radiologist, state, policy)
    corrects = corrected_read(state, slot)
    if findings is None:
        findings = [
            FindingInput(image_id=f.image_id, type=f.type, x=f.x, y=f.y, width=f.width, height=f.height)
            for f in (corrects.findings.all() if corrects is not None else ())
            if f.image_id in images
        ]
    for finding in findings:
        image = images.get(finding.image_id)
        if image is None:
            raise PortalError(f"image {finding.image_id} is not part of this study", field="findings")
        if finding.type not in Finding.Type.values:
            raise PortalError(f"finding type must be one of {', '.join(Finding.Type.values)}", field="findings")
        if min(finding.x, finding.y, finding.width, finding.height) < 0 or (
            finding.x + finding.width > image.columns or finding.y + finding.height > image.rows
        ):
            raise PortalError("a finding lies outside its image", field="findings")
    if slot == "consensus":
        is_final = consensus_reached(state, radiologist, decision, birads)
    else:
        concordant_second = slot == "second" and concordant(state.first, decision, birads)
        is_final = slot in FINAL_SLOTS or concordant_second
    held = lock is not None and lock.user_id == radiologist.pk
    version = (study.reviews.aggregate(v=Max("version"))["v"] or 0) + 1
    review = Review.objects.create(
        slot=slot,
        is_final=is_final,
        reading_seconds=(now - lock.acquired).total_seconds() if held else None,
        study=study,
        version=version,
        radiologist=radiologist,
        decision=decision,
        birads=int(birads),
        density=density,
        note=note,
        agrees_with_ai=None if study.exam_flag is None else (decision == "abnormal") == study.exam_flag,
    )
    Finding.objects.bulk_create(
        Finding(
            review=review,
            image_id=f.image_id,
            laterality=images[f.image_id].laterality,
            type=f.type,
            x=f.x,
            y=f.y,
            width=f.width,
            height=f.height,
        )
        for f in findings
    )
    study.status = Study.Status.REPORTED if is_final else Study.Status.IN_REVIEW
    fields = ["status", "updated"]
    if study.assigned_to_id == radiologist.pk:
        study.assigned_to = None  # the assignment is used up: the next read may go to anyone
        fields.append("assigned_to")
    study.save(update_fields=fields)
    record_event(
        action=actions.REVIEW_SUBMIT if version == 1 else actions.REVIEW_CORRECT,
        user=radiologist,
        study=study,
        obj=review,
        ip_address=ip_address,
        detail={
            "version": version,
            "decision": decision,
            "birads": int(birads),
            "density": density,
            "findings": len(findings),
            "corrects": corrects.version if corrects is not None else None,
            "agrees_with_ai": review.agrees_with_ai,
            "slot": slot,
            "final": is_final,
        },
    )
    if slot == "second" and not is_final:
        record_event(
            action=actions.ARBITRATION_NEEDED,
            user=radiologist,
            study=study,
            obj=review,
            ip_address=ip_address,
            detail={
                "first": [state.first.decision, state.first.birads],
                "second": [decision, int(birads)],
                "resolution": policy.resolution,
            },
        )
    if slot == "consensus" and not is_final:
        record_event(
            action=actions.CONSENSUS_PROPOSED,
            user=radiologist,
            study=study,
            obj=review,
            ip_address=ip_address,
            detail={"decision": decision, "birads": int(birads), "awaits": "the other reader's agreement"},
        )
    if held:
        release_lock(study=study, user=radiologist, reason="submit", ip_address=ip_address)
    if is_final:
        export.queue_decision(review)  # the final decision's SR goes to the PACS once this commits
        export.queue_ai_result(study)  # held back until now when the policy blinds readers to the AI
    return review
