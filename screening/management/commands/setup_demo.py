"""Create the role groups and demo accounts, and print their credentials."""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from rest_framework.authtoken.models import Token

from screening.models import Role

DEMO_USERS = (
    ("admin", Role.ADMIN, True),
    ("radiologist", Role.RADIOLOGIST, False),
    ("apiclient", Role.API_CLIENT, False),
)


class Command(BaseCommand):
    help = "Create demo admin, radiologist and API client accounts (new random passwords each run)."

    def handle(self, *args, **options):
        User = get_user_model()
        for role in Role:
            Group.objects.get_or_create(name=role.value)
        self.stdout.write("Demo accounts (research use only):")
        for username, role, staff in DEMO_USERS:
            user, _ = User.objects.get_or_create(username=username)
            password = secrets.token_urlsafe(9)
            user.set_password(password)
            user.is_staff = staff
            user.is_superuser = staff
            user.save()
            user.groups.add(Group.objects.get(name=role.value))
            token, _ = Token.objects.get_or_create(user=user)
            self.stdout.write(f"  {role.label:<12} username={username:<12} password={password}  api-token={token.key}")
