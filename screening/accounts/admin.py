"""Accounts in the Django admin: user management and API tokens are for superusers only.

An account in the admin role runs the programme (cases, sites, DICOM nodes, models); it does not manage
accounts. Were it to, it could set another user's password, make itself superuser, or read another
user's API token and act as that user. So, whatever permissions its group or the user holds:

- users: only superusers add, change and delete them (passwords, groups, flags); an admin with
  `view_user` only looks (the study admin's reader lookup needs it), and sees no password hash;
- API tokens: no page lists them or shows a key (DRF's token admin is removed). A superuser issues a
  token from the user list (action "Issue a new API token"): the key is shown once, on the page that
  answers, and the user's earlier token stops working; "Revoke API token" removes it. Both audited.

Imported by screening/admin.py, after Django's and DRF's own registrations, which it replaces.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from rest_framework.authtoken import admin as _drf_token_admin  # noqa: F401 - registered first, removed below
from rest_framework.authtoken.models import TokenProxy

from screening.accounts import services
from screening.audit.services import client_ip

User = get_user_model()

if admin.site.is_registered(TokenProxy):
    admin.site.unregister(TokenProxy)  # it lists every key and shows it on each token's page
if admin.site.is_registered(User):
    admin.site.unregister(User)


def _superuser(request) -> bool:
    return bool(request.user.is_active and request.user.is_superuser)


@admin.register(User)
class AccountAdmin(UserAdmin):
    """Django's user admin for superusers; a read-only list and page for an admin allowed to view users."""

    actions = ["issue_api_token", "revoke_api_token"]

    def has_add_permission(self, request, *args):
        return _superuser(request)

    def has_change_permission(self, request, *args):
        return _superuser(request)  # also guards the password page (user_change_password asks it)

    def has_delete_permission(self, request, *args):
        return _superuser(request)

    def get_fieldsets(self, request, obj=None):
        if obj is not None and not _superuser(request):
            return ((None, {"fields": ("username",)}), ("Roles", {"fields": ("is_active", "is_staff", "groups")}))
        return super().get_fieldsets(request, obj)

    def user_change_password(self, request, id, form_url=""):
        if not _superuser(request):
            raise PermissionDenied
        return super().user_change_password(request, id, form_url)

    @admin.action(description="Issue a new API token (shown once; replaces the old one)", permissions=["change"])
    def issue_api_token(self, request, queryset):
        issued = services.issue_tokens(
            users=queryset.order_by("username"), by=request.user, ip_address=client_ip(request)
        )
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "issued": issued}
        response = TemplateResponse(request, "admin/auth/user/api_tokens_issued.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke API token", permissions=["change"])
    def revoke_api_token(self, request, queryset):
        services.revoke_tokens(
            users=queryset.filter(auth_token__isnull=False), by=request.user, ip_address=client_ip(request)
        )
        self.message_user(request, "The selected users' API tokens no longer work.")
