from __future__ import annotations

import os

import pytest

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(autouse=True)
def clean_cache():
    """Throttle counters and Idempotency-Key answers live in the cache (Redis when configured):
    without this, an earlier run's answer for the same user id and key would be replayed."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(autouse=True)
def ai_sr_without_settling(settings):
    """In production an AI-result SR waits PORTAL_DICOM_EXPORT_STABLE_SECONDS after its study's last
    image; the tests that are not about that wait send it at once."""
    settings.PORTAL_DICOM_EXPORT_STABLE_SECONDS = 0


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    """Each test stores media in its own folder, so orphan checks see only its files."""
    root = tmp_path / "media"
    root.mkdir()
    settings.MEDIA_ROOT = root
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": root}},
    }
    return root


def stored_files(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _user(django_user_model, username: str, role: str | None, **extra):
    from django.contrib.auth.models import Group

    user = django_user_model.objects.create_user(username=username, password="a-long-test-password", **extra)
    if role:
        # get_or_create: a transactional test's flush removes the groups the migration made
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


@pytest.fixture
def radiologist(db, django_user_model):
    return _user(django_user_model, "rad", "radiologist")


@pytest.fixture
def admin_user(db, django_user_model):
    return _user(django_user_model, "boss", "admin", is_staff=True)


@pytest.fixture
def api_client_user(db, django_user_model):
    return _user(django_user_model, "bridge", "api_client")


@pytest.fixture
def outsider(db, django_user_model):
    return _user(django_user_model, "nobody", None)


def _token_client(user):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def api(api_client_user):
    """An API client authenticated by token with the api_client role."""
    return _token_client(api_client_user)


@pytest.fixture
def rad_api(radiologist):
    return _token_client(radiologist)


@pytest.fixture
def anon_api():
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture(scope="session")
def test_checkpoint(tmp_path_factory):
    """A small real checkpoint (ImageNet backbone, untrained head, 256x160 input): fast on CPU."""
    from ml.checkpoint import make_checkpoint, save_checkpoint
    from ml.config import ModelConfig
    from ml.exam import ExamModel
    from ml.model import build_model

    config = ModelConfig(input_height=256, input_width=160)
    checkpoint = make_checkpoint(
        build_model(config),
        config,
        exam_model=ExamModel(breast_weights=(0.8, 0.2, 0.3, 0.0), exam_weights=(1.0, 0.1)).to_dict(),
        calibration=(1.0, 0.0),
        threshold=0.5,
        operating_point={"sensitivity": 0.9},
        metrics={"auc": 0.5},
        training_data={"n": 0},
        training={"note": "test fixture"},
    )
    return save_checkpoint(checkpoint, tmp_path_factory.mktemp("models") / "test-model.pt")


@pytest.fixture
def champion(db, test_checkpoint):
    from screening.ai.services.checkpoints import register_checkpoint

    return register_checkpoint(test_checkpoint, name="test-model", promote=True)
