"""Screening units: which site codes exist, and the check every entry point makes on a `site` it is given."""

from __future__ import annotations

import re

from screening.errors import PortalError
from screening.models import DEFAULT_SITE, Site

_SLUG = re.compile(r"[-a-zA-Z0-9_]{1,64}")


def site_codes() -> list[str]:
    """Every site's code, the default site first (it needs no row: a fresh portal has it)."""
    codes = set(Site.objects.values_list("code", flat=True)) | {DEFAULT_SITE}
    return sorted(codes, key=lambda code: (code != DEFAULT_SITE, code))


def site_names() -> dict[str, str]:
    names = dict(Site.objects.values_list("code", "name"))
    return {code: names.get(code) or ("Default site" if code == DEFAULT_SITE else code) for code in site_codes()}


def clean_site(code: str | None) -> str:
    """The site code itself, the default site for an empty one; a code no admin created is refused."""
    code = (code or "").strip()
    if not code:
        return DEFAULT_SITE
    if not _SLUG.fullmatch(code):  # never a query with it: a NUL byte or the like is simply no site
        raise PortalError("a site code is letters, digits, hyphens and underscores (at most 64)", field="site")
    if code != DEFAULT_SITE and not Site.objects.filter(code=code).exists():
        known = ", ".join(site_codes())
        raise PortalError(f"unknown site {code[:64]!r}: an admin creates sites first (known: {known})", field="site")
    return code
