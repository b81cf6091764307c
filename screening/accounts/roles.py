"""Who may do what. Roles are Django groups named after models.Role values."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied

from screening.models import Role


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
    """Radiologists, arbitrators and admins see cases with patient identity."""
    return bool(roles_of(user) & {Role.RADIOLOGIST, Role.ARBITRATOR, Role.ADMIN})


def reads_blind(user) -> bool:
    """Readers whom a reading policy blinds to the AI: radiologists and arbitrators. An admin holding neither
    role runs the programme (performance, audit, the Django admin) and sees the AI result; give anyone who
    reads the radiologist role, and blinding applies to them whatever else they hold."""
    return bool(roles_of(user) & {Role.RADIOLOGIST, Role.ARBITRATOR})


def is_arbitrator(user) -> bool:
    """Arbitrators give the final decision on discordant double reads (screening/reading/services/reading.py)."""
    return Role.ARBITRATOR in roles_of(user)


def can_arbitrate_list(user) -> bool:
    """The arbitration worklist: arbitrators work it, admins watch it."""
    return is_arbitrator(user) or is_admin(user)


def can_record_outcomes(user) -> bool:
    """Outcomes after recall (biopsy, follow-up): admins, and any role granted 'Can add outcome'
    (an API client bridging the pathology system)."""
    return is_admin(user) or bool(roles_of(user) and user.has_perm("screening.add_outcome"))


def sees_all_studies(user) -> bool:
    """Radiologists and admins see every study; an API client only its own uploads,
    unless an admin grants it 'Can see every study' (screening.view_all_studies)."""
    return can_read_cases(user) or bool(roles_of(user) and user.has_perm("screening.view_all_studies"))


def can_upload(user) -> bool:
    return bool(roles_of(user))


def can_see_identity(user) -> bool:
    """Patient identity: radiologists, admins, and API clients granted both 'Can view patient' and
    'Can see every study'. Identity needs both because a client limited to its own uploads could
    otherwise upload a guessed patient ID and read the name and birth date the portal already holds."""
    return can_read_cases(user) or bool(
        roles_of(user) and user.has_perm("screening.view_patient") and user.has_perm("screening.view_all_studies")
    )


# What the admin role may do in the Django admin, granted to its group after every
# `migrate` (permissions only exist once their apps are migrated). Case records stay
# read-only whatever is granted: their model admins refuse add, change and delete.
ADMIN_GROUP_PERMISSIONS = {
    # change_study: assignment (audited); DICOM peers: the receiver's allow-list (audited);
    # DICOM destinations: where the SRs go (audited); outcomes and reading policies (append-only, audited);
    # sites (added and renamed, audited; never deleted)
    "screening": {
        "view_*",
        "change_study",
        "add_site",
        "change_site",
        "add_outcome",
        "add_readingpolicy",
        "add_dicompeer",
        "change_dicompeer",
        "delete_dicompeer",
        "add_dicomdestination",
        "change_dicomdestination",
        "delete_dicomdestination",
        "add_hl7destination",  # HL7 destinations: the RISs the results go to (audited)
        "change_hl7destination",
        "delete_hl7destination",
        "add_notetemplate",  # the readers' note templates (audited; retired, never deleted)
        "change_notetemplate",
    },
    # Users and API tokens are managed by superusers only (screening/accounts/admin.py): admins look.
    "auth": {"view_user", "view_group"},
    "axes": {"view_accessattempt", "delete_accessattempt", "view_accesslog", "view_accessfailurelog"},
    "django_celery_beat": {"view_*", "change_periodictask"},
}


def sync_admin_group_permissions(**kwargs) -> None:
    """post_migrate: the role groups exist, and `admin` has its admin permissions (idempotent, adds only).

    Also after a flush (tests), which empties the groups that migration 0002 made."""
    from django.contrib.auth.models import Group, Permission

    for role in Role.values:
        Group.objects.get_or_create(name=role)
    group = Group.objects.get(name=Role.ADMIN)
    wanted = []
    for app_label, codenames in ADMIN_GROUP_PERMISSIONS.items():
        for permission in Permission.objects.filter(content_type__app_label=app_label):
            if any(
                permission.codename == c or (c.endswith("*") and permission.codename.startswith(c[:-1]))
                for c in codenames
            ):
                wanted.append(permission)
    group.permissions.add(*wanted)


def require(allowed: bool) -> None:
    """The one refusal of every page: 403 unless the role check passed (`require(is_admin(request.user))`)."""
    if not allowed:
        raise PermissionDenied
