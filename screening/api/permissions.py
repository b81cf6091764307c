from rest_framework.permissions import BasePermission

from screening.accounts.roles import can_read_cases, can_upload, is_admin


class HasPortalRole(BasePermission):
    """Authenticated and holding at least one portal role (radiologist, admin, API client)."""

    message = "your account has no portal role; ask an admin to grant one"

    def has_permission(self, request, view) -> bool:
        return can_upload(request.user)


class CanReadCases(BasePermission):
    message = "only radiologists and admins may read cases"

    def has_permission(self, request, view) -> bool:
        return can_read_cases(request.user)


class IsPortalAdmin(BasePermission):
    message = "only admins may do this"

    def has_permission(self, request, view) -> bool:
        return is_admin(request.user)
