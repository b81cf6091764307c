"""What an exam's report says, and to whom: the final decision, only for a reader who may see the reads."""

from __future__ import annotations

from dataclasses import dataclass, field

from screening.models import Review, Study
from screening.reading import lexicon
from screening.reading.assessment import SIDE_NAMES, BreastCall, breasts_of
from screening.reading.rules import may_see_reads, reading_state


@dataclass
class Report:
    study: Study
    state: str  # "final", "pending" (no final decision yet) or "hidden" (blinded: the reader has not read it)
    review: Review | None = None
    breasts: list[tuple[str, BreastCall]] = field(default_factory=list)  # ("Right", call), ("Left", call)
    findings: list[str] = field(default_factory=list)  # each reported finding in lexicon words
    unlinked_marks: list[str] = field(default_factory=list)  # marks from before the lexicon, as "Mass, L CC"


def report_of(study: Study, user) -> Report:
    """The exam's report as `user` may see it (blinding: screening.reading.rules.may_see_reads)."""
    reviews = list(
        Review.objects.filter(study=study)
        .select_related("radiologist")
        .prefetch_related("findings__image", "reported_findings")
    )
    state = reading_state(study, reviews)
    if not may_see_reads(user, state):
        return Report(study, "hidden")
    final = state.final
    if final is None:
        return Report(study, "pending")
    return Report(
        study,
        "final",
        final,
        breasts=[(SIDE_NAMES[side].capitalize(), call) for side, call in breasts_of(final).items()],
        findings=[lexicon.describe(f) for f in final.reported_findings.all()],  # numbered 1, 2, ... as listed
        unlinked_marks=[
            f"{mark.get_type_display()}, {mark.image.laterality} {mark.image.view}"
            for mark in final.findings.all()
            if mark.reported_id is None
        ],
    )
