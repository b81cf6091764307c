"""The audit trail page of one case (admins)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import render
from django.views.decorators.http import require_safe

from screening.accounts.roles import is_admin, require
from screening.audit import actions
from screening.audit.selectors import audit_trail
from screening.models import Study


@require_safe
@login_required
def study_audit(request, pk: int):
    """The audit trail of one case (admins). It outlives the study: a deleted one shows why it went."""
    require(is_admin(request.user))
    study = Study.objects.filter(pk=pk).first()
    events = list(audit_trail(pk)[:500])
    if study is None and not events:
        raise Http404("No such study")
    deletion = next((e for e in events if e.action == actions.STUDY_DELETE), None) if study is None else None
    return render(
        request, "screening/audit.html", {"study_id": pk, "study": study, "deletion": deletion, "events": events}
    )
