"""Issue 21, faults and bad input: nothing stays stuck, bad input costs bounded work and gets a clear 4xx/503,
and nothing is left behind."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone

from screening.models import Image, Prediction
from screening.services import ingest_file
from tests.dicom_factory import mg_dataset, to_bytes
from tests.eager import tasks_in_process

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db


# --- embedded mode: predictions left running by a killed server ----------------------------------------


def _left_running(champion, *, minutes_ago: float) -> Prediction:
    """A prediction a killed embedded server was running (its upload's request never finished)."""
    from unittest import mock

    with mock.patch("screening.dispatch.send"):  # the server died before the task ran
        image = ingest_file(file=io.BytesIO(to_bytes(mg_dataset())), filename="x.dcm").image
    row = Prediction.objects.get(image=image)
    Prediction.objects.filter(pk=row.pk).update(
        status="running", attempts=1, updated=timezone.now() - timedelta(minutes=minutes_ago)
    )
    return row


def test_at_start_up_a_prediction_left_running_is_recovered_at_once(champion):
    row = _left_running(champion, minutes_ago=1)  # well within the stale limit: the old sweep waited for it
    with tasks_in_process("screening.tasks.predict_image") as runs:
        call_command("sweep", "--recover", stdout=io.StringIO())
    row.refresh_from_db()
    assert row.status == "done" and row.probability is not None, row.error
    assert runs == {row.pk: 1}
    assert Image.objects.get(pk=row.image_id).status == "predicted"


def test_the_sweeper_command_recovers_what_is_stuck_past_the_stale_limit(
    champion, settings, django_capture_on_commit_callbacks
):
    row = _left_running(champion, minutes_ago=settings.PORTAL_PREDICTION_STALE_SECONDS / 60 + 1)
    with tasks_in_process("screening.tasks.predict_image"), django_capture_on_commit_callbacks(execute=True):
        call_command("sweep", stdout=io.StringIO())  # the timer's tick, without --recover
    row.refresh_from_db()
    assert row.status == "done"


def test_a_row_running_in_a_live_server_is_not_taken_at_start_up(champion):
    row = _left_running(champion, minutes_ago=-1)  # updated after this start-up began: a live process owns it
    with tasks_in_process("screening.tasks.predict_image") as runs:
        call_command("sweep", "--recover", stdout=io.StringIO())
    row.refresh_from_db()
    assert row.status == "running" and runs == {}


def test_embedded_mode_starts_the_sweeper_before_the_web_server():
    script = (ROOT / "scripts" / "run.sh").read_text()
    assert "manage.py sweep --recover --every 60 &" in script
    assert script.index("manage.py sweep --recover") < script.index("manage.py runserver")


# --- bounded cost of bad input ---------------------------------------------------------------------------


def _dcmread_sizes(monkeypatch) -> list[int]:
    """The size of every stream ingest's validation hands pydicom (its forced read costs time per byte)."""
    import pydicom

    from screening.services import ingest_validation

    sizes, real = [], pydicom.dcmread

    def spy(fp, *args, **kwargs):
        position = fp.tell()
        fp.seek(0, 2)
        sizes.append(fp.tell())
        fp.seek(position)
        return real(fp, *args, **kwargs)

    monkeypatch.setattr(ingest_validation.pydicom, "dcmread", spy)
    return sizes


@pytest.mark.parametrize("start", [b"", b"\x08\x00\x05\x00"], ids=["all-zero", "dataset-like-start"])
def test_a_large_file_of_zeros_is_refused_415_without_parsing_it_all(api, media_root, monkeypatch, start):
    """It cost about 0.75 s of CPU per MB: pydicom's forced read took every 8 zero bytes for an element."""
    from tests.conftest import stored_files
    from tests.uploads import upload

    sizes = _dcmread_sizes(monkeypatch)
    content = start + b"\0" * (20_000_000 - len(start))
    response = upload(api, content, "zeros.bin")
    assert response.status_code == 415, response.json()
    assert all(size <= 1 << 20 for size in sizes), sizes
    assert not Image.objects.exists() and stored_files(media_root) == []


def test_a_dicom_without_its_preamble_is_still_accepted(api):
    from tests.uploads import upload

    content = to_bytes(mg_dataset())[132:]  # no preamble, no DICM: the file meta group first
    response = upload(api, content, "plain.dcm")
    assert response.status_code == 201, response.json()
