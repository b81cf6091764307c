"""Radiologists' decisions. A correction adds a version; nothing is overwritten.

Each decision fills a reading slot of its case (screening/reading/rules.py): the
reading policy decides whether it is the final decision or one of two blind reads.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from screening.audit import actions
from screening.audit.services import record_event
from screening.errors import Conflict, PortalError
from screening.exchange.services import export, hl7_export
from screening.models import CaseLock, Image, Review, Study
from screening.reading.assessment import SIDE_NAMES, SIDES, BreastCall, exam_result, incoherent, mapped_breasts
from screening.reading.rules import (
    FINAL_SLOTS,
    consensus_reached,
    corrected_read,
    discordant_with,
    next_slot,
    policy_of,
    reading_state,
)
from screening.reading.services import findings as lexicon_findings
from screening.reading.services.findings import FindingInput, ReportedFindingInput
from screening.reading.services.reading import release_lock


@transaction.atomic
def review_submit(
    *,
    study: Study,
    radiologist,
    decision: str | None = None,
    birads: int | None = None,
    breasts: dict[str, tuple[str, int]] | None = None,
    density: str = "",
    note: str = "",
    findings: list[FindingInput] | None = None,
    reported: list[ReportedFindingInput] | None = None,
    ip_address: str | None = None,
) -> Review:
    """Record a read of a study as its next version, with findings, in the slot the reading policy gives.

    A correction (a new version of a read: one's own first read or final decision, or an arbitrator's of
    the final) starts from the findings of the read it corrects: `findings` and `reported` both None keep
    its marks and reported findings, lists (even empty) replace them. A new read with both None has none.
    `reported`: findings in lexicon terms (services.findings), each naming its marks in `findings`.

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
    if density not in ("", *Review.Density.values):
        raise PortalError("density must be A, B, C or D", field="density")
    images = {image.pk: image for image in Image.objects.filter(study=study)}
    policy = policy_of(study)
    state = reading_state(study, list(Review.objects.filter(study=study)))
    slot = next_slot(study, radiologist, state, policy)
    corrects = corrected_read(state, slot)
    if findings is None and reported is None:
        findings, reported = lexicon_findings.copy_of(corrects, images)
    findings, reported = findings or [], reported or []
    lexicon_findings.check_marks(findings, images)
    sides = lexicon_findings.check_reported(reported, findings, images)
    calls = _breast_calls(decision, birads, breasts, {images[f.image_id].laterality for f in findings} | set(sides))
    decision, birads = exam_result(calls)
    if slot == "consensus":
        is_final = consensus_reached(state, radiologist, calls)
    else:
        discordant = discordant_with(state.first, calls) if slot == "second" else []
        is_final = slot in FINAL_SLOTS or (slot == "second" and not discordant)
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
        birads=birads,
        decision_right=calls["R"].decision,
        birads_right=calls["R"].birads,
        decision_left=calls["L"].decision,
        birads_left=calls["L"].birads,
        density=density,
        note=note,
        agrees_with_ai=None if study.exam_flag is None else (decision == "abnormal") == study.exam_flag,
    )
    lexicon_findings.record(review=review, marks=findings, reported=reported, sides=sides, images=images)
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
            "birads": birads,
            "breasts": {SIDE_NAMES[side]: [call.decision, call.birads] for side, call in calls.items()},
            "density": density,
            "findings": len(findings),
            "reported_findings": len(reported),
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
                "second": [decision, birads],
                "discordant_breasts": [SIDE_NAMES[side] for side in discordant],
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
            detail={"decision": decision, "birads": birads, "awaits": "the other reader's agreement"},
        )
    if held:
        release_lock(study=study, user=radiologist, reason="submit", ip_address=ip_address)
    if is_final:
        export.queue_decision(review)  # the final decision's SR goes to the PACS once this commits
        hl7_export.queue_result(review)  # and its ORU^R01 to the RIS (F, or C for a later final decision)
        export.queue_ai_result(study)  # held back until now when the policy blinds readers to the AI
    return review


def _breast_calls(
    decision: str | None, birads: int | None, breasts: dict[str, tuple[str, int]] | None, marked_sides: set[str]
) -> dict[str, BreastCall]:
    """Each breast's call: as given, or mapped from an exam-level decision (assessment.mapped_breasts); an
    exam-level decision given beside the breasts must be the one they make."""
    if breasts is None:
        if decision is None or birads is None:
            raise PortalError("give each breast's decision and BI-RADS (or the exam's)", field="breasts")
        _check_call(decision, birads, "decision", "birads")
        return mapped_breasts(decision, int(birads), marked_sides)
    if set(breasts) != set(SIDES):
        raise PortalError("give a decision and BI-RADS for both breasts, right and left", field="breasts")
    calls = {}
    for side in SIDES:
        side_decision, side_birads = breasts[side]
        _check_call(side_decision, side_birads, SIDE_NAMES[side], SIDE_NAMES[side], prefix=f"{SIDE_NAMES[side]}: ")
        calls[side] = BreastCall(side_decision, int(side_birads))
    exam = exam_result(calls)
    if (decision is not None and decision != exam[0]) or (birads is not None and int(birads) != exam[1]):
        raise PortalError(
            f"the breasts make the exam {exam[0]}, BI-RADS {exam[1]}; leave the exam's decision out or give that",
            field="decision",
        )
    return calls


def _check_call(decision: str, birads, decision_field: str, birads_field: str, prefix: str = "") -> None:
    if decision not in Review.Decision.values:
        raise PortalError(f"{prefix}decision must be normal or abnormal", field=decision_field)
    if isinstance(birads, bool) or not isinstance(birads, int) or not 0 <= birads <= 6:
        raise PortalError(f"{prefix}BI-RADS must be between 0 and 6", field=birads_field)
    if (why := incoherent(decision, birads)) is not None:
        raise PortalError(prefix + why, field=birads_field)
