"""Fixtures of the reading workflow tests: a second reader, an arbitrator, double reading."""

from __future__ import annotations

import pytest

from screening.reading.services.reading import set_policy
from tests.conftest import _user


@pytest.fixture
def second_radiologist(db, django_user_model):
    return _user(django_user_model, "rad2", "radiologist")


@pytest.fixture
def arbitrator(db, django_user_model):
    return _user(django_user_model, "arb", "arbitrator")


@pytest.fixture
def double_reading(admin_user):
    return set_policy(user=admin_user, mode="double")
