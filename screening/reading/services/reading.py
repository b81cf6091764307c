"""Writes of the reading workflow: the reading policy per site, case locks, opening a case, assignment.

The rules they follow (slots, blinding, arbitration, lock status) are reads: `screening.reading.rules`.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from screening.audit import actions
from screening.audit.services import record_event
from screening.errors import Conflict, PortalError
from screening.models import DEFAULT_SITE, CaseLock, ReadingPolicy, Review, Study
from screening.reading.rules import CaseReading, LockStatus, case_reading, expected_workload, lock_refusal, policy_of
from screening.sites.selectors import clean_site


@transaction.atomic
def set_policy(
    *,
    user,
    mode: str,
    site: str = DEFAULT_SITE,
    triage_threshold: float | None = None,
    resolution: str = ReadingPolicy.Resolution.ARBITRATOR,
    blind_ai: bool = False,
    order: str | None = None,
    lock_minutes: int = 15,
    note: str = "",
    ip_address: str | None = None,
) -> ReadingPolicy:
    """Add a policy version for a site (the latest wins), audited with its expected workload.

    The worklist order defaults to the AI score, or to the exam date when the AI is hidden: a list
    ordered by a hidden score would show readers what the AI thinks, so that pair is refused.
    """
    if mode not in ReadingPolicy.Mode.values:
        raise PortalError(f"mode must be one of {', '.join(ReadingPolicy.Mode.values)}", field="mode")
    if mode == ReadingPolicy.Mode.AI_TRIAGED:
        if triage_threshold is None or not 0 <= float(triage_threshold) <= 1:
            raise PortalError(
                "AI-triaged reading needs an AI exam score between 0 and 1 below which one reader reads",
                field="triage_threshold",
            )
        triage_threshold = float(triage_threshold)
    else:
        triage_threshold = None
    if resolution not in ReadingPolicy.Resolution.values:
        raise PortalError("resolution must be arbitrator or consensus", field="resolution")
    order = order or (ReadingPolicy.Order.DATE if blind_ai else ReadingPolicy.Order.SCORE)
    if order not in ReadingPolicy.Order.values:
        raise PortalError(f"order must be one of {', '.join(ReadingPolicy.Order.values)}", field="order")
    if blind_ai and order == ReadingPolicy.Order.SCORE:
        raise PortalError(
            "a worklist in AI-score order would show readers what the hidden AI thinks: order it by date or age",
            field="order",
        )
    if not 1 <= int(lock_minutes) <= 240:
        raise PortalError("the lock time-out must be between 1 and 240 minutes", field="lock_minutes")
    site = clean_site(site)
    policy = ReadingPolicy.objects.create(
        site=site,
        mode=mode,
        triage_threshold=triage_threshold,
        resolution=resolution,
        blind_ai=bool(blind_ai),
        order=order,
        lock_minutes=int(lock_minutes),
        created_by=user,
        note=note[:2000],
    )
    record_event(
        action=actions.READING_POLICY_SET,
        user=user,
        obj=policy,
        ip_address=ip_address,
        detail={
            "site": site,
            "mode": mode,
            "triage_threshold": triage_threshold,
            "resolution": resolution,
            "blind_ai": bool(blind_ai),
            "order": order,
            "lock_minutes": int(lock_minutes),
            "expected_workload": expected_workload(triage_threshold, mode, site),
        },
    )
    return policy


@transaction.atomic
def acquire_lock(*, study: Study, user, ip_address: str | None = None) -> LockStatus:
    """Lock the case to this reader for the policy's time-out; refresh it if already theirs.

    Serialised on the study row, so of two readers opening a case at once exactly one gets it.
    An expired lock is taken over (its time-out audited). A reader with no read to make here is refused
    (Conflict): a lock held by someone who cannot read the case only blocked the reader who can.
    """
    Study.objects.select_for_update().filter(pk=study.pk).first()
    refusal = lock_refusal(case_reading(study, user, LockStatus(False, None, None)))
    if refusal:
        raise Conflict(refusal)
    now = timezone.now()
    expires = now + timedelta(minutes=policy_of(study).lock_minutes)
    lock = CaseLock.objects.select_related("user").filter(study=study).first()
    if lock is not None and lock.expires > now:
        if lock.user_id != user.pk:
            return LockStatus(False, lock.user.get_username(), lock.expires)
        CaseLock.objects.filter(pk=lock.pk).update(expires=expires)
        return LockStatus(True, user.get_username(), expires)
    if lock is not None:
        record_event(
            action=actions.LOCK_TIMEOUT,
            user=user,
            study=study,
            obj=lock,
            ip_address=ip_address,
            detail={"held_by": lock.user.get_username(), "expired": lock.expires.isoformat()},
        )
        lock.delete()
    lock = CaseLock.objects.create(study=study, user=user, acquired=now, expires=expires)
    record_event(
        action=actions.LOCK_ACQUIRE,
        user=user,
        study=study,
        obj=lock,
        ip_address=ip_address,
        detail={"expires": expires.isoformat()},
    )
    return LockStatus(True, user.get_username(), expires)


@transaction.atomic
def release_lock(*, study: Study, user, reason: str, ip_address: str | None = None) -> bool:
    """Release the user's lock on a case (on submit or on leaving it). True when there was one."""
    lock = CaseLock.objects.select_for_update().filter(study=study, user=user).first()
    if lock is None:
        return False
    record_event(
        action=actions.LOCK_RELEASE, user=user, study=study, obj=lock, ip_address=ip_address, detail={"reason": reason}
    )
    lock.delete()
    return True


def release_expired_locks() -> int:
    """Drop locks past their time-out (a periodic task); each time-out is audited."""
    released = 0
    for lock in CaseLock.objects.select_related("user", "study").filter(expires__lte=timezone.now()):
        with transaction.atomic():
            if CaseLock.objects.filter(pk=lock.pk, expires__lte=timezone.now()).delete()[0]:
                record_event(
                    action=actions.LOCK_TIMEOUT,
                    study=lock.study,
                    obj=lock,
                    detail={"held_by": lock.user.get_username(), "expired": lock.expires.isoformat()},
                )
                released += 1
    return released


def open_case(*, study: Study, user, ip_address: str | None = None) -> CaseReading:
    """Audit the opening; lock the case to the user when they have a read to make on it that others wait for."""
    case_opened(study=study, user=user, ip_address=ip_address)
    reading = case_reading(study, user)
    if lock_refusal(reading):
        return reading
    return case_reading(study, user, acquire_lock(study=study, user=user, ip_address=ip_address))


def assign(*, studies: list[Study], reader, user, ip_address: str | None = None) -> int:
    """Assign (or with reader None, unassign) studies to a reader; never to one who already read them."""
    from screening.intake.services.studies import assign_studies

    if reader is not None:
        from screening.accounts.roles import can_read_cases

        if not can_read_cases(reader):
            raise PortalError(f"{reader.get_username()} is not a reader", field="reader")
        already = Review.objects.filter(study__in=studies, radiologist=reader).values_list("study_id", flat=True)
        if already:
            raise Conflict(
                f"{reader.get_username()} has already read study #{min(already)}: a reader never reads an exam twice",
                field="studies",
            )
    return assign_studies(studies=studies, assignee=reader, user=user, ip_address=ip_address)


def case_opened(*, study: Study, user, ip_address: str | None = None) -> None:
    """Audit the opening of a case. Its status stays: 'in review' means a read was made and the final
    decision is awaited (review_submit), never only that someone looked (who is reading it is its lock)."""
    record_event(action=actions.OPEN_CASE, user=user, study=study, obj=study, ip_address=ip_address)
