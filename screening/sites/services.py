"""Screening units: an admin adds one or renames it (audited); codes never change and sites are never deleted."""

from __future__ import annotations

from django.db import transaction

from screening.audit import actions
from screening.audit.services import record_event
from screening.models import Site


@transaction.atomic
def save_site(site: Site, *, created: bool, user=None, ip_address: str | None = None) -> Site:
    site.save()
    record_event(
        action=actions.SITE_ADD if created else actions.SITE_CHANGE,
        user=user,
        obj=site,
        ip_address=ip_address,
        detail={"code": site.code, "name": site.name},
    )
    return site
