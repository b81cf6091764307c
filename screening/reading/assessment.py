"""Per-breast assessment: the rules that tie each breast's call to the exam's result (plain Python, no Django).

A read assesses each breast: recall or not (decision abnormal or normal) and its BI-RADS category. The
exam's result follows from its breasts: abnormal (recall) when either breast is, with the BI-RADS
category of the more worrying breast in the ACR BI-RADS Atlas order of increasing likelihood of
malignancy or need for action: 1, 2, 3, 6, 0, 4, 5.

Reads made before per-breast assessment (one decision for the exam) are mapped at read time: a normal
exam is normal on both sides; an abnormal exam is abnormal on the breasts its findings mark and normal
(BI-RADS 1) on the other, or abnormal on both when no finding was marked, the same reading of them the
training labels always made.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

SIDES = ("R", "L")
SIDE_NAMES = {"R": "right", "L": "left"}
NORMAL, ABNORMAL = "normal", "abnormal"

# A coherent call: BI-RADS 1 (negative) and 2 (benign) are normal; 0 (recall), 3 (probably benign,
# short follow-up), 4 and 5 (suspicious) and 6 (known cancer) are abnormal. The database holds the same
# rule for the exam and for each breast (check constraints review_decision_matches_birads, ..._right, ..._left).
BIRADS_FOR = {NORMAL: (1, 2), ABNORMAL: (0, 3, 4, 5, 6)}
BIRADS_TEXT = {NORMAL: "1 or 2", ABNORMAL: "0, 3, 4, 5 or 6"}
SEVERITY = (1, 2, 3, 6, 0, 4, 5)  # ACR BI-RADS Atlas: the overall assessment is the breast latest in this order


@dataclass(frozen=True)
class BreastCall:
    decision: str
    birads: int
    mapped: bool = False  # derived from a single exam-level decision (a read from before per-breast assessment)

    @property
    def recall(self) -> bool:
        return self.decision == ABNORMAL

    def as_dict(self) -> dict:
        return {"decision": self.decision, "birads": self.birads, "mapped": self.mapped}


def incoherent(decision: str, birads: int) -> str | None:
    """Why a decision and its BI-RADS category disagree (e.g. normal with BI-RADS 5), or None."""
    if int(birads) in BIRADS_FOR[decision]:
        return None
    other = "a normal" if decision == ABNORMAL else "an abnormal"
    return f"BI-RADS {birads} goes with {other} decision; {decision} allows BI-RADS {BIRADS_TEXT[decision]}"


def exam_result(breasts: dict[str, BreastCall]) -> tuple[str, int]:
    """The exam's decision and BI-RADS category from its two breasts."""
    decision = ABNORMAL if any(call.recall for call in breasts.values()) else NORMAL
    birads = max((call.birads for call in breasts.values()), key=SEVERITY.index)
    return decision, birads


def mapped_breasts(decision: str, birads: int, marked_sides: Iterable[str] = ()) -> dict[str, BreastCall]:
    """Both breasts of a single exam-level decision (see the module docstring)."""
    marked = set(marked_sides) & set(SIDES)
    if decision != ABNORMAL or not marked:
        return {side: BreastCall(decision, birads, mapped=True) for side in SIDES}
    return {
        side: BreastCall(ABNORMAL, birads, True) if side in marked else BreastCall(NORMAL, 1, True) for side in SIDES
    }


def breasts_of(review, marked_sides: Iterable[str] | None = None) -> dict[str, BreastCall]:
    """A read's call per breast ("R", "L"): its own, or mapped from its exam-level decision.

    `marked_sides`: the sides its findings mark, when the caller has them; otherwise read from
    `review.findings` (prefetch them for many reads)."""
    if review.birads_right is not None and review.birads_left is not None:
        return {
            "R": BreastCall(review.decision_right, review.birads_right),
            "L": BreastCall(review.decision_left, review.birads_left),
        }
    if marked_sides is None:
        marked_sides = {f.laterality for f in review.findings.all()} if review.decision == ABNORMAL else ()
    return mapped_breasts(review.decision, review.birads, marked_sides)


def discordant_sides(a: dict[str, BreastCall], b: dict[str, BreastCall], group) -> list[str]:
    """The breasts two reads disagree on: one recalls and the other does not, or their BI-RADS categories
    fall in different groups (`group`: category -> group, screening.reading.services.reading.BIRADS_GROUP)."""
    return [
        side for side in SIDES if a[side].decision != b[side].decision or group[a[side].birads] != group[b[side].birads]
    ]
