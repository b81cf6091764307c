"""How a programme reads: policies per site, reading slots, blinding, arbitration, case locks, assignment.

A case is read once (single reading, or below the AI-triage score) or twice, blind
(double reading, or at or above the AI-triage score). Each read is a Review with its
slot; the case's final decision is the single read, the second read when it agrees
with the first, or else the arbitrator's decision or the two readers' consensus: one
of the pair proposes it (a consensus review, not final) and it becomes final when the
other submits the same call on each breast. Reads agree breast by breast (assessment.discordant_sides).
Which slot a submission fills follows from the reads already made, so the policy in
force when the first read was made keeps governing that case.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.utils import timezone

from screening.accounts.roles import is_arbitrator, reads_blind
from screening.errors import Conflict
from screening.models import DEFAULT_SITE, CaseLock, ReadingPolicy, Review, Study
from screening.reading.assessment import BreastCall, breasts_of, discordant_sides
from screening.sites.selectors import site_codes

# Discordance by BI-RADS category group: negative or benign (1, 2); probably benign, short-interval
# follow-up (3); recall for assessment or suspicious (0, 4, 5); known cancer (6). Recall versus no
# recall (decision normal/abnormal) is implied: every group lies on one side of it.
BIRADS_GROUP = {1: "negative", 2: "negative", 3: "probably_benign", 0: "recall", 4: "recall", 5: "recall", 6: "cancer"}
FINAL_SLOTS = ("single", "arbitration", "consensus")


def policy_for(site: str = DEFAULT_SITE) -> ReadingPolicy:
    """The site's policy: its latest row, or single reading (unsaved) when none was ever set."""
    policy = ReadingPolicy.objects.filter(site=site).order_by("-created", "-id").first()
    return policy or ReadingPolicy(site=site, mode=ReadingPolicy.Mode.SINGLE)


def policy_of(study: Study) -> ReadingPolicy:
    """The policy of the study's site."""
    return policy_for(study.site or DEFAULT_SITE)


def current_policies() -> list[ReadingPolicy]:
    """Every site's policy in force, the default site first."""
    return [policy_for(code) for code in site_codes()]


def any_site_blinds_ai() -> bool:
    return any(policy.blind_ai for policy in current_policies())


def expected_workload(
    threshold: float | None, mode: str = ReadingPolicy.Mode.AI_TRIAGED, site: str | None = None
) -> dict:
    """Reads per exam a policy would cost, from the exam scores of the site's studies scored so far
    (every site's when `site` is None).

    Unscored exams count as read twice under AI triage (no score, no triage).
    """
    studies = Study.objects.all() if site is None else Study.objects.filter(site=site)
    scores = list(studies.values_list("exam_score", flat=True))
    n = len(scores)
    if mode == ReadingPolicy.Mode.SINGLE:
        single = n
    elif mode == ReadingPolicy.Mode.DOUBLE or threshold is None:
        single = 0
    else:
        single = sum(1 for s in scores if s is not None and s < threshold)
    reads = single + 2 * (n - single)
    return {
        "exams": n,
        "one_reader": single,
        "two_readers": n - single,
        "reads": reads,
        "reads_per_exam": round(reads / n, 3) if n else None,
        "saving_vs_double": round(1 - reads / (2 * n), 3) if n else None,
    }


def reads_required(study: Study, policy: ReadingPolicy) -> int:
    if policy.mode == ReadingPolicy.Mode.SINGLE:
        return 1
    if policy.mode == ReadingPolicy.Mode.AI_TRIAGED:
        below = study.exam_score is not None and study.exam_score < policy.triage_threshold
        return 1 if below else 2
    return 2


def discordant_with(first: Review, calls: dict[str, BreastCall]) -> list[str]:
    """The breasts ("R", "L") on which a read disagrees with `first`: one recalls and the other does not,
    or their BI-RADS categories fall in different groups. None: the reads are concordant."""
    return discordant_sides(breasts_of(first), calls, BIRADS_GROUP)


@dataclass
class ReadingState:
    """Where a case stands: 'unread', 'second' (awaiting the second read), 'arbitration' or 'final'."""

    stage: str
    latest: dict[str, Review] = field(default_factory=dict)  # slot -> its latest version
    final: Review | None = None
    reader_ids: set[int] = field(default_factory=set)  # everyone who made a read of this case

    @property
    def first(self) -> Review | None:
        return self.latest.get("first")

    @property
    def second(self) -> Review | None:
        return self.latest.get("second")

    @property
    def proposal(self) -> Review | None:
        """The latest consensus decision proposed by one of the pair and not yet agreed by the other."""
        return self.latest.get("consensus") if self.final is None else None


def reading_state(study: Study, reviews: list[Review] | None = None) -> ReadingState:
    """The case's stage from its reviews of the current round (newest version first is not assumed).

    A study reopened by an image that arrived after its final decision is read again from the start:
    the reads before `study.reads_from` were of an exam without that image."""
    rows = sorted(reviews if reviews is not None else study.reviews.all(), key=lambda r: r.version)
    if study.reads_from is not None:
        rows = [r for r in rows if r.created >= study.reads_from]
    latest: dict[str, Review] = {}
    final = None
    for review in rows:
        latest[review.slot] = review
        if review.is_final:
            final = review
    readers = {r.radiologist_id for r in rows}
    if final is not None:
        return ReadingState("final", latest, final, readers)
    if "first" in latest and "second" in latest:
        return ReadingState("arbitration", latest, None, readers)
    if "first" in latest:
        return ReadingState("second", latest, None, readers)
    return ReadingState("unread", latest, None, readers)


def next_slot(study: Study, user, state: ReadingState, policy: ReadingPolicy) -> str:
    """The slot this user's submission would fill, or a Conflict saying why they may not read the case."""
    if policy.blind_ai and not reads_blind(user):
        # An admin without a reader role sees the AI result (screening.blinding): a read by them would not be blind.
        raise Conflict("this site's policy hides the AI from readers: reading it needs the radiologist role")
    first, second = state.first, state.second
    if state.stage == "final":
        final = state.final
        if final.radiologist_id == user.pk and final.slot in ("single", "arbitration"):
            return final.slot  # a correction of one's own final decision
        if is_arbitrator(user) and final.slot in ("arbitration", "consensus"):
            return "arbitration"  # a consensus is two readers' decision: one of them alone cannot correct it
        raise Conflict("this case has its final decision; only its author or an arbitrator may correct it")
    if state.stage == "arbitration":
        pair = {first.radiologist_id, second.radiologist_id}
        if policy.resolution == ReadingPolicy.Resolution.CONSENSUS and user.pk in pair:
            return "consensus"
        if is_arbitrator(user) and user.pk not in pair:
            return "arbitration"
        raise Conflict("this case awaits arbitration: the two reads disagree")
    if state.stage == "second":
        if user.pk == first.radiologist_id:
            return "first"  # a correction of one's own first read, before the second reader
        return "second"
    return "single" if reads_required(study, policy) == 1 else "first"


def corrected_read(state: ReadingState, slot: str | None) -> Review | None:
    """The read that a submission in `slot` (next_slot's answer) corrects, or None for a new read: the
    final decision once there is one, and a first reader's own first read while the second is awaited."""
    if slot is None:
        return None
    if state.stage == "final":
        return state.final
    if state.stage == "second" and slot == "first":
        return state.first
    return None


def consensus_reached(state: ReadingState, user, calls: dict[str, BreastCall]) -> bool:
    """The other reader of the pair proposed the same call on each breast: the consensus is made."""
    proposal = state.proposal
    return proposal is not None and proposal.radiologist_id != user.pk and not discordant_with(proposal, calls)


def may_see_reads(user, state: ReadingState) -> bool:
    """Blinding: other readers' decisions only once the case is final, after one's own read, or to arbitrate."""
    if state.stage == "final" or user.pk in state.reader_ids:
        return True
    return state.stage == "arbitration" and is_arbitrator(user)


def may_see_ai(user, state: ReadingState, policy: ReadingPolicy) -> bool:
    """The blinding rule for one case; screening.blinding holds the same rule as a query condition
    (tests/portal/test_blinding_matrix.py checks that the two agree)."""
    return not policy.blind_ai or not reads_blind(user) or may_see_reads(user, state)


# --- locks ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LockStatus:
    held: bool  # the asking user holds it
    holder: str | None  # who holds it (None: nobody)
    expires: object | None


def _lock_status(lock: CaseLock | None, user) -> LockStatus:
    if lock is None or lock.expires <= timezone.now():
        return LockStatus(False, None, None)
    return LockStatus(lock.user_id == user.pk, lock.user.get_username(), lock.expires)


def lock_status(study: Study, user) -> LockStatus:
    return _lock_status(CaseLock.objects.select_related("user").filter(study=study).first(), user)


# --- opening a case and assignment ------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseReading:
    """What the case page and the API tell a reader about the reading of a case."""

    policy: ReadingPolicy
    state: ReadingState
    slot: str | None  # the slot this user would fill; None when they may not read it
    refusal: str  # why not, when slot is None
    lock: LockStatus
    show_reads: bool
    show_ai: bool
    corrects: Review | None = None  # the read this user's submission would correct (its form starts from it)

    @property
    def slot_hidden(self) -> bool:
        """Under AI triage with the AI hidden from this reader, "single read", "first read" or "second read"
        would say on which side of the triage score the hidden AI result lies: the page names none of them."""
        return (
            self.policy.mode == ReadingPolicy.Mode.AI_TRIAGED
            and not self.show_ai
            and self.slot in ("single", "first", "second")
        )


def case_reading(study: Study, user, lock: LockStatus | None = None) -> CaseReading:
    policy = policy_of(study)
    state = reading_state(study, list(Review.objects.filter(study=study)))
    try:
        slot, refusal = next_slot(study, user, state, policy), ""
    except Conflict as exc:
        slot, refusal = None, exc.message
    return CaseReading(
        policy=policy,
        state=state,
        slot=slot,
        refusal=refusal,
        lock=lock or lock_status(study, user),
        show_reads=may_see_reads(user, state),
        show_ai=may_see_ai(user, state, policy),
        corrects=corrected_read(state, slot),
    )


def lock_refusal(reading: CaseReading) -> str:
    """Why this reader may not lock the case ("" when they may): they have no read to make, or only the
    correction of their own first read while the case waits for its second reader."""
    if reading.slot is None:
        return reading.refusal
    if reading.state.stage == "second" and reading.slot == "first":
        return (
            "the case waits for its second reader: it is not locked to its first reader "
            "(you may still correct your own read)"
        )
    return ""
