"""Who may do what. Roles are Django groups named after models.Role values."""

from __future__ import annotations

from .models import Role


def roles_of(user) -> set[str]:
    if user is None or not user.is_authenticated or not user.is_active:
        return set()
    cached = getattr(user, "_portal_roles", None)
    if cached is None:
        cached = set(user.groups.values_list("name", flat=True)) & set(Role.values)
        if user.is_superuser:
            cached.add(Role.ADMIN)
        user._portal_roles = cached
    return cached


def is_admin(user) -> bool:
    return Role.ADMIN in roles_of(user)


def can_read_cases(user) -> bool:
    """Radiologists and admins see cases with patient identity."""
    return bool(roles_of(user) & {Role.RADIOLOGIST, Role.ADMIN})


def can_upload(user) -> bool:
    return bool(roles_of(user))


def can_see_identity(user) -> bool:
    """Patient identity: radiologists, admins, and API clients granted the 'Can view patient' permission."""
    return can_read_cases(user) or bool(roles_of(user) and user.has_perm("screening.view_patient"))
