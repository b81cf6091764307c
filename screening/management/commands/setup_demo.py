"""Create the role groups and demo accounts, print their credentials, and add the synthetic demonstration cases."""

from __future__ import annotations

import secrets
import time

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from rest_framework.authtoken.models import Token

from screening.errors import PortalError
from screening.intake.demo_cases import CASES
from screening.intake.services import demo
from screening.models import Role, Study
from screening.sites.selectors import clean_site

DEMO_USERS = (
    ("admin", Role.ADMIN, True),
    ("radiologist", Role.RADIOLOGIST, False),
    ("apiclient", Role.API_CLIENT, False),
)


class Command(BaseCommand):
    help = (
        "Create demo admin, radiologist and API client accounts (new random passwords each run; each API token is "
        "made once and kept) and, on a portal holding no study yet, a few synthetic demonstration cases."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--cases",
            choices=["auto", "yes", "no"],
            default="auto",
            help="synthetic demonstration cases: auto adds them only while the portal holds no study (a fresh "
            "install); yes adds any that are missing; no adds none",
        )
        parser.add_argument(
            "--remove-cases", action="store_true", help="delete the demonstration cases (audited) and exit"
        )

    def handle(self, *args, cases: str, remove_cases: bool, **options):
        clean_site("")  # the default site exists (migrations made it): fail here, not in the middle of a case
        if remove_cases:
            try:
                removed = demo.remove_demo_cases()
            except PortalError as exc:
                raise CommandError(exc.message) from None
            self.stdout.write(f"Removed {removed} synthetic demonstration case(s).")
            return
        self._accounts()
        if cases == "no" or (cases == "auto" and Study.objects.exists()):
            if cases == "auto":
                self.stdout.write("Demonstration cases: none added (the portal holds studies; --cases yes adds them).")
            return
        self.stdout.write(
            f"Adding {len(CASES)} synthetic demonstration cases ({4 * len(CASES)} MG images drawn by the "
            "portal, no patient's); rendering and, without a worker, the AI prediction run here:"
        )
        start = time.monotonic()
        try:
            added = demo.add_demo_cases(progress=lambda line: self.stdout.write(f"  {line}"))
        except PortalError as exc:
            if cases == "auto":  # run.sh goes on: the portal works without them
                self.stdout.write(f"  none added: {exc.message}")
                return
            raise CommandError(f"demonstration cases not added: {exc.message}") from None
        self.stdout.write(f"  {added} case(s) added in {time.monotonic() - start:.0f} s; they are on the worklist.")

    def _accounts(self) -> None:
        User = get_user_model()
        for role in Role:
            Group.objects.get_or_create(name=role.value)
        self.stdout.write("Demo accounts (research use only; new passwords at every start, API tokens kept):")
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
