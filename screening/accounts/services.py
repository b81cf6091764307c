"""API tokens: issued and revoked by superusers (from the user admin), each audited."""

from __future__ import annotations

from django.db import transaction
from rest_framework.authtoken.models import Token

from screening.audit import actions
from screening.audit.services import record_event


@transaction.atomic
def issue_tokens(*, users, by, ip_address: str | None = None) -> list[tuple[str, str]]:
    """A new token for each user (their earlier one stops working): (username, key) pairs, to show once."""
    issued = []
    for user in users:
        Token.objects.filter(user=user).delete()
        issued.append((user.get_username(), Token.objects.create(user=user).key))
        _audit(actions.API_TOKEN_ISSUE, user=user, by=by, ip_address=ip_address)
    return issued


@transaction.atomic
def revoke_tokens(*, users, by, ip_address: str | None = None) -> int:
    revoked = 0
    for user in users:
        if Token.objects.filter(user=user).delete()[0]:
            _audit(actions.API_TOKEN_REVOKE, user=user, by=by, ip_address=ip_address)
            revoked += 1
    return revoked


def _audit(action: str, *, user, by, ip_address: str | None) -> None:
    record_event(action=action, user=by, obj=user, ip_address=ip_address, detail={"for": user.get_username()})
