"""Every PORTAL_TRAINING_* setting is declared in settings and checked when the portal starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from portal.env import env_training_overrides

ROOT = Path(__file__).resolve().parents[2]


def test_training_overrides_are_model_settings_or_start_up_stops(monkeypatch):
    monkeypatch.setenv("PORTAL_TRAINING_OVERRIDES", '{"epochs": 5, "head_hidden": 16}')
    assert env_training_overrides("PORTAL_TRAINING_OVERRIDES") == {"epochs": 5, "head_hidden": 16}
    monkeypatch.setenv("PORTAL_TRAINING_OVERRIDES", '{"epochz": 5}')
    with pytest.raises(ImproperlyConfigured, match="unknown model settings epochz"):
        env_training_overrides("PORTAL_TRAINING_OVERRIDES")
    monkeypatch.setenv("PORTAL_TRAINING_OVERRIDES", "[1, 2]")
    with pytest.raises(ImproperlyConfigured, match="must be a JSON object"):
        env_training_overrides("PORTAL_TRAINING_OVERRIDES")


def _settings_with(**env) -> subprocess.CompletedProcess:
    code = "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'portal.settings'); django.setup()"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PORTAL_TRAINING_")}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PORTAL_TRAINING_SEED": "-1"}, "PORTAL_TRAINING_SEED must be at least 0"),
        ({"PORTAL_TRAINING_TIME_LIMIT": "600", "PORTAL_TRAINING_SOFT_TIME_LIMIT": "900"}, "must be below"),
        ({"PORTAL_TRAINING_STALE_SECONDS": "ten"}, "PORTAL_TRAINING_STALE_SECONDS must be an integer"),
    ],
)
def test_an_out_of_bounds_training_setting_stops_start_up(env, message):
    result = _settings_with(**env)
    assert result.returncode != 0 and message in result.stderr


def test_the_training_settings_have_their_defaults():
    from django.conf import settings

    assert settings.PORTAL_TRAINING_SOFT_TIME_LIMIT < settings.PORTAL_TRAINING_TIME_LIMIT
    assert settings.PORTAL_TRAINING_SEED == 0 and settings.PORTAL_TRAINING_OVERRIDES == {}
    assert Path(settings.PORTAL_TRAINING_CACHE_DIR).name == "training-cache"
