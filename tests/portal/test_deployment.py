"""docker-compose.yml (no Docker engine here) and production settings, checked by reading."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_has_the_production_services():
    services = compose()["services"]
    assert {"postgres", "redis", "web", "inference-worker", "training-worker", "beat"} <= set(services)
    for name in services:
        assert "healthcheck" in services[name], f"{name} has no healthcheck"
    assert {"media", "pgdata"} <= set(compose()["volumes"])


def test_the_inference_worker_reserves_a_gpu_and_consumes_the_inference_queue():
    worker = compose()["services"]["inference-worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert "-Q inference" in worker["command"] and "--prefetch-multiplier 1" in worker["command"]
    assert "-Q training" in compose()["services"]["training-worker"]["command"]


def test_every_process_that_predicts_on_the_cpu_gets_the_malloc_tuning():
    """Without it glibc maps every layer's large buffers afresh: a CPU forward pass took 2.1x as long (511 vs 242
    ms an image). The workers get it from compose; embedded mode predicts in the web process started by run.sh."""
    tuning = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "100000000000"}
    env = compose()["services"]["inference-worker"].get("environment", {})
    assert all(env.get(k) == v for k, v in tuning.items()), env
    run = (ROOT / "scripts" / "run.sh").read_text()
    before_server = run[: run.index("manage.py runserver")]
    for name, value in tuning.items():
        assert f"export {name}=${{{name}:-{value}}}" in before_server


def test_compose_commands_point_at_code_that_exists():
    from django.conf import settings

    services = compose()["services"]
    assert "portal.wsgi:application" in services["web"]["command"]
    assert (ROOT / "portal" / "wsgi.py").exists() and (ROOT / "portal" / "celery.py").exists()
    assert "django_celery_beat.schedulers:DatabaseScheduler" in services["beat"]["command"]
    queues = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    assert {"inference", "training"} <= queues
    assert (ROOT / "Dockerfile").exists()
    # gthread workers: a case's four 27 MB pixel transfers (sendfile) do not hold every worker of the web
    assert "--threads" in services["web"]["command"]


def test_every_build_of_the_viewer_makes_both_its_bundles():
    """The viewer page links early.js (built with --mode early) and early.js imports viewer.js: the image, the
    build script and `npm run build` each make both, or the page opens with no script at all."""
    early = "vite build --config static/viewer/vite.config.js --mode early"
    for text in (
        (ROOT / "Dockerfile").read_text(),
        (ROOT / "scripts" / "build_viewer.sh").read_text(),
        json.loads((ROOT / "package.json").read_text())["scripts"]["build"],
    ):
        assert "vite build --config static/viewer/vite.config.js" in text.replace(early, "")
        assert early in text


def test_production_settings_pass_check_deploy(tmp_path):
    env = {
        **os.environ,
        "PORTAL_ENV": "production",
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": "x" * 20 + "k3y-f0r-the-deploy-check-only-" + "y" * 20,
        "DJANGO_ALLOWED_HOSTS": "portal.example.org",
        "PORTAL_VAR_DIR": str(tmp_path),
        "DATABASE_URL": "",
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    env = {**os.environ, "PORTAL_ENV": "production", "DJANGO_ALLOWED_HOSTS": "x", "PORTAL_VAR_DIR": str(tmp_path)}
    env.pop("DJANGO_SECRET_KEY", None)
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_a_bad_environment_value_names_the_variable(tmp_path):
    env = {**os.environ, "PORTAL_MAX_UPLOAD_MB": "lots", "PORTAL_VAR_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "PORTAL_MAX_UPLOAD_MB must be an integer" in result.stderr


def test_an_s3_bucket_setting_moves_media_to_s3_compatible_storage(tmp_path):
    code = (
        "import django; django.setup();"
        "from django.core.files.storage import storages;"
        "s = storages['default'];"
        "print(type(s).__name__, s.bucket_name, s.endpoint_url)"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "PORTAL_VAR_DIR": str(tmp_path),
        "PORTAL_S3_BUCKET": "mammograms",
        "PORTAL_S3_ENDPOINT_URL": "http://minio.internal:9000",
    }
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["S3Storage", "mammograms", "http://minio.internal:9000"]


def test_production_static_files_are_collected_hashed_and_compressed(tmp_path):
    env = {
        **os.environ,
        "PORTAL_ENV": "production",
        "DJANGO_SECRET_KEY": "s" * 60,
        "DJANGO_ALLOWED_HOSTS": "portal.example.org",
        "PORTAL_VAR_DIR": str(tmp_path),
        "DJANGO_STATIC_ROOT": str(tmp_path / "static"),
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    collected = {p.name for p in (tmp_path / "static" / "screening").iterdir()}
    assert any(name.startswith("portal.") and name.endswith(".css.gz") for name in collected)
    assert "staticfiles.json" in {p.name for p in (tmp_path / "static").iterdir()}


def test_the_web_process_does_not_import_torch():
    code = (
        "import django; django.setup();"
        "from django.urls import get_resolver; get_resolver().url_patterns;"
        "import portal.wsgi, screening.reading.views, screening.ai.views, screening.intake.api, screening.admin, sys;"
        "print('torch' in sys.modules)"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def embedded_env(tmp_path) -> dict[str, str]:
    """The run command's environment: no database, broker or debug settings at all."""
    env = {**os.environ, "PORTAL_VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "portal.settings"}
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DJANGO_DEBUG", "PORTAL_ENV", "DJANGO_STATIC_ROOT"):
        env.pop(name, None)
    return env


def test_the_run_command_serves_with_debug_off_and_still_serves_static_files(tmp_path):
    run_sh = (ROOT / "scripts" / "run.sh").read_text()
    assert "collectstatic" in run_sh and "DJANGO_DEBUG" not in run_sh
    env = embedded_env(tmp_path)
    collected = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert collected.returncode == 0, collected.stderr
    code = (
        "import django; django.setup();"
        "from django.conf import settings; from django.test import Client;"
        "c = Client();"
        "css = c.get('/static/screening/portal.css'); missing = c.get('/no-such-page/');"
        "print(settings.DEBUG, css.status_code, missing.status_code, b'URLconf' in missing.content)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "200", "404", "False"]


def test_in_process_tasks_do_not_warn_about_a_broker_hostname(tmp_path):
    """Embedded mode runs tasks eagerly, yet celery still opens its in-memory producer for each one."""
    code = (
        "import django; django.setup();"
        "from portal.celery import app;"
        "assert app.conf.task_always_eager;"
        "ctx = app.producer_or_acquire(None); ctx.__enter__(); ctx.__exit__(None, None, None)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=embedded_env(tmp_path), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "No hostname was supplied" not in result.stderr


def test_an_upload_in_embedded_mode_predicts_one_batch_and_a_worker_up_to_twelve(tmp_path):
    """Embedded mode runs the inference task in the upload's request: it takes one batch, so no upload waits
    for a queue of others' images; a Celery worker claims up to twelve, a batch at a time."""
    code = (
        "import django; django.setup(); from django.conf import settings;"
        "print(settings.PORTAL_INFERENCE_BATCHES_PER_TASK)"
    )
    answers = []
    for extra in ({}, {"REDIS_URL": "redis://127.0.0.1:6379/9"}):
        env = {**embedded_env(tmp_path), **extra}
        result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        answers.append(result.stdout.split()[-1])
    assert answers == ["1", "12"]
