"""Issue 21, faults and bad input: nothing stays stuck, bad input costs bounded work and gets a clear 4xx/503,
and nothing is left behind."""

from __future__ import annotations

import io
import logging
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from screening.intake.services.ingest import ingest_file
from screening.models import Image, Prediction
from screening.reading.rules import case_reading
from screening.reading.services.reading import acquire_lock, open_case, release_lock
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

    from screening.intake.services import ingest_validation

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


# --- huge integers, nan and inf in query parameters ------------------------------------------------------

ODD_NUMBERS = ["99999999999999999999999", "-99999999999999999999999", "nan", "inf", "-inf", "1e999", "NaN"]


def _cursor(position: str) -> str:
    import base64
    from urllib.parse import urlencode

    return base64.b64encode(urlencode({"p": position}).encode()).decode()


ODD_QUERIES = [
    ("/api/v1/studies/", "patient_number"),
    ("/api/v1/images/", "study"),
    ("/api/v1/images/", "patient_number"),
    ("/api/v1/images/", "page_size"),
    ("/api/v1/images/", "page"),
    ("/api/v1/predictions/", "image"),
    ("/api/v1/predictions/", "study"),
    ("/api/v1/patients/", "page"),
    ("/api/v1/studies/", "page"),
    ("/api/v1/worklist/", "page"),
    ("/api/v1/reading/worklist/", "page"),
    ("/api/v1/reading/policy/", "threshold"),
    ("/api/v1/performance/", "study"),
    ("/dicomweb/studies", "limit"),
    ("/dicomweb/studies", "offset"),
    ("/", "page"),
    ("/reading/", "page"),
    ("/reading/arbitration/", "page"),
    ("/performance/", "study"),
]


def test_huge_integers_nan_and_inf_in_query_parameters_are_4xx_never_500(admin_user, champion):
    from rest_framework.test import APIClient

    from tests.conftest import _token_client

    ingest_file(file=io.BytesIO(to_bytes(mg_dataset())), filename="x.dcm")
    api, page = _token_client(admin_user), APIClient()
    page.force_login(admin_user)
    api.raise_request_exception = page.raise_request_exception = False  # a 500 is an answer to count here
    failures = []

    def get(client, path, params, shown):
        with transaction.atomic():  # a savepoint: a query PostgreSQL refused does not spoil the next request
            code = client.get(path, params).status_code
            transaction.set_rollback(True)
        if code >= 500:
            failures.append(f"{shown}: {code}")

    for path, name in [*ODD_QUERIES, (f"/api/v1/models/{champion.pk}/operating-point/", "threshold")]:
        client = page if not path.startswith(("/api/", "/dicomweb/")) else api
        for value in ODD_NUMBERS:
            get(client, path, {name: value}, f"{path}?{name}={value}")
    for path in ("/api/v1/images/", "/api/v1/predictions/"):
        for value in ODD_NUMBERS:
            get(api, path, {"cursor": _cursor(value)}, f"{path}?cursor=<p={value}>")
    assert not failures, "\n".join(failures)


# --- access logs -----------------------------------------------------------------------------------------

QIDO_LINE = "GET /dicomweb/studies?PatientName=DOE%5EJANE&PatientID=P-77&limit=5 HTTP/1.1"


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(self.format(record))


def test_the_development_servers_access_log_keeps_qido_search_values_out():
    """Embedded mode's access log (runserver) wrote patient names and IDs of every QIDO search."""
    from types import SimpleNamespace

    from django.core.servers.basehttp import WSGIRequestHandler

    collect = _Collect()
    logger = logging.getLogger("django.server")
    logger.addHandler(collect)
    try:
        handler = SimpleNamespace(request=None, log_date_time_string=lambda: "now")
        WSGIRequestHandler.log_message(handler, '"%s" %s %s', QIDO_LINE, "200", "512")
    finally:
        logger.removeHandler(collect)
    assert collect.lines, "the access line was not logged"
    line = collect.lines[0]
    assert "DOE" not in line and "P-77" not in line, line
    assert "/dicomweb/studies?PatientName=[redacted]&PatientID=[redacted]&limit=[redacted]" in line


def test_gunicorns_access_log_keeps_qido_search_values_out():
    from gunicorn.glogging import SafeAtoms

    atoms = SafeAtoms({"r": QIDO_LINE, "q": "PatientName=DOE%5EJANE&PatientID=P-77", "U": "/dicomweb/studies"})
    collect = _Collect()
    collect.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("gunicorn.access")
    logger.addHandler(collect)
    logger.setLevel(logging.INFO)
    try:
        logger.info('"%(r)s" q=%(q)s', atoms)
    finally:
        logger.removeHandler(collect)
    assert collect.lines and "DOE" not in collect.lines[0] and "P-77" not in collect.lines[0], collect.lines
    assert "q=PatientName=[redacted]&PatientID=[redacted]" in collect.lines[0]


# --- Redis configured but down ---------------------------------------------------------------------------


@pytest.fixture
def redis_down(settings):
    """The cache is Redis at an address where nothing listens (a Redis that is down)."""
    import socket

    with socket.socket() as probe:  # a free port, closed again: connections to it are refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{port}/0",
            "OPTIONS": {"socket_connect_timeout": 1},
        }
    }


def test_with_redis_down_an_upload_answers_503_and_stores_nothing(api, redis_down, media_root):
    from tests.conftest import stored_files
    from tests.uploads import upload

    response = upload(api, to_bytes(mg_dataset()))
    assert response.status_code == 503, response.content
    assert response.json()["error"]["code"] == "service_unavailable" and response["Retry-After"]
    assert not Image.objects.exists() and stored_files(media_root) == []


def test_with_redis_down_an_idempotent_retry_and_a_stow_answer_503(api, redis_down):
    from tests.uploads import URL

    body = b"--XYZ\r\nContent-Type: application/dicom\r\n\r\n" + to_bytes(mg_dataset()) + b"\r\n--XYZ--\r\n"
    stow = api.generic(
        "POST", "/dicomweb/studies", data=body, content_type='multipart/related; type="application/dicom"; boundary=XYZ'
    )
    assert stow.status_code == 503, stow.content
    keyed = api.post(URL, {}, format="multipart", HTTP_IDEMPOTENCY_KEY="k1")
    assert keyed.status_code == 503
    assert not Image.objects.exists()


# --- oversized multipart uploads, full disks -------------------------------------------------------------


@pytest.fixture
def written(monkeypatch):
    """Bytes Django's upload handlers wrote to temporary files or memory, counted where they are written."""
    from django.core.files.uploadhandler import MemoryFileUploadHandler, TemporaryFileUploadHandler

    counted = {"bytes": 0}
    for handler in (MemoryFileUploadHandler, TemporaryFileUploadHandler):
        real = handler.receive_data_chunk

        def spy(self, raw_data, start, real=real):
            counted["bytes"] += len(raw_data)
            return real(self, raw_data, start)

        monkeypatch.setattr(handler, "receive_data_chunk", spy)
    return counted


def test_an_oversized_multipart_upload_is_refused_413_before_it_is_written(api, settings, media_root, written):
    from tests.conftest import stored_files
    from tests.uploads import upload

    settings.PORTAL_MAX_UPLOAD_BYTES = 1_000_000
    response = upload(api, b"\0" * 8_000_000, "big.dcm")
    assert response.status_code == 413, response.content
    assert response.json()["error"]["code"] == "too_large"
    assert written["bytes"] == 0
    assert not Image.objects.exists() and stored_files(media_root) == []


def test_a_chunked_upload_is_cut_off_as_soon_as_it_passes_the_limit(settings, written):
    """No Content-Length to go by (chunked transfer): refused once the bytes received pass the limit."""
    from django.core.files.uploadhandler import load_handler
    from django.test import RequestFactory

    from screening.intake.uploads import MULTIPART_OVERHEAD, UploadTooLarge

    settings.PORTAL_MAX_UPLOAD_BYTES = 1_000_000
    handler = load_handler("screening.intake.uploads.HashingTemporaryFileUploadHandler", RequestFactory().post("/"))
    handler.handle_raw_input(None, {}, None, b"XYZ")
    handler.new_file("file", "big.dcm", "application/dicom", None)
    chunk = b"\0" * 65536
    with pytest.raises(UploadTooLarge, match="over the limit of 1.0 MB"):
        for start in range(0, 8_000_000, len(chunk)):
            handler.receive_data_chunk(chunk, start)
    assert written["bytes"] <= 1_000_000 + MULTIPART_OVERHEAD and handler.file.closed


def _disk_full_after(monkeypatch, keep: int) -> None:
    """Local storage writes `keep` bytes of the file, then the disk is full (ENOSPC)."""
    import errno

    from django.core.files.storage import FileSystemStorage

    def full(self, name, content):
        path = Path(self.path(name))
        path.parent.mkdir(parents=True, exist_ok=True)
        content.seek(0)
        path.write_bytes(content.read(keep))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(FileSystemStorage, "_save", full)


def test_a_full_disk_answers_503_and_leaves_no_partial_file(api, media_root, monkeypatch):
    from tests.conftest import stored_files
    from tests.uploads import upload

    _disk_full_after(monkeypatch, keep=1000)
    response = upload(api, to_bytes(mg_dataset()))
    assert response.status_code == 503, response.content
    assert response.json()["error"]["code"] == "storage_full"
    assert not Image.objects.exists() and stored_files(media_root) == []


def test_a_full_temporary_disk_while_an_upload_streams_in_answers_503(api, media_root, monkeypatch, settings):
    import errno

    from django.core.files.uploadhandler import TemporaryFileUploadHandler

    from tests.conftest import stored_files
    from tests.uploads import upload

    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1000  # to a temporary file, where the disk is full

    def full(self, raw_data, start):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(TemporaryFileUploadHandler, "receive_data_chunk", full)
    response = upload(api, to_bytes(mg_dataset()))
    assert response.status_code == 503, response.content
    assert not Image.objects.exists() and stored_files(media_root) == []


# --- locks -----------------------------------------------------------------------------------------------


def _read(study, user, decision="normal", birads=1):
    from screening.reading.services.reviews import review_submit

    return review_submit(study=study, radiologist=user, decision=decision, birads=birads)


def test_a_reader_with_nothing_to_read_cannot_lock_the_case_and_block_the_reader_who_can(
    double_reading, radiologist, second_radiologist
):
    from django.urls import reverse

    from screening.errors import Conflict
    from screening.models import CaseLock
    from tests.conftest import _token_client
    from tests.portal.reading_fixtures import make_study

    study = make_study("LOCK-1", 0.5)
    _read(study, radiologist)  # the first read: the case now waits for another reader
    opened = open_case(study=study, user=radiologist)
    assert not opened.lock.held and not CaseLock.objects.exists()
    with pytest.raises(Conflict, match="waits for its second reader"):
        acquire_lock(study=study, user=radiologist)
    response = _token_client(radiologist).post(reverse("api-reading-lock", args=[study.pk]))
    assert response.status_code == 409 and "second reader" in response.json()["error"]["message"]
    assert open_case(study=study, user=second_radiologist).lock.held  # the reader who can read gets it
    _read(study, second_radiologist)  # concordant: final
    # Once final, a reader who may not correct it cannot lock it either.
    with pytest.raises(Conflict, match="final decision"):
        acquire_lock(study=study, user=second_radiologist)


def test_a_case_reopened_by_a_new_image_after_its_final_decision_is_read_again(
    double_reading, radiologist, second_radiologist, arbitrator
):
    from screening.models import Review, Study
    from screening.reading.selectors import arbitration_worklist, reading_worklist_for
    from tests.portal.reading_fixtures import make_study

    study = make_study("REOPEN-1", 0.5)
    _read(study, radiologist)
    _read(study, second_radiologist)
    study.refresh_from_db()
    assert study.status == "reported"
    new = mg_dataset(patient_id="REOPEN-1", study_uid=study.study_uid, laterality="R", seed=5)
    ingest_file(file=io.BytesIO(to_bytes(new)), filename="late.dcm")
    study = Study.objects.get(pk=study.pk)
    assert study.status == "new" and study.reads_from is not None
    # Readable again, from the first read, by both readers (it left everyone's worklist before)
    assert study in reading_worklist_for(radiologist) and study in reading_worklist_for(second_radiologist)
    assert case_reading(study, radiologist).slot == "first"
    assert open_case(study=study, user=second_radiologist).lock.held
    _read(study, second_radiologist, "abnormal", 4)  # first read of the new round
    release_lock(study=study, user=second_radiologist, reason="leave")
    assert case_reading(study, radiologist).slot == "second"
    _read(study, radiologist)  # discordant: to arbitration
    assert study in arbitration_worklist()
    final = _read(study, arbitrator, "abnormal", 4)
    assert final.slot == "arbitration" and final.is_final
    assert Study.objects.get(pk=study.pk).status == "reported"
    assert Review.objects.filter(study=study).count() == 5  # the first round's reads stay in the record


def test_the_sweeper_loop_survives_a_failed_tick(monkeypatch):
    """Embedded mode: SQLite busy with the web server's write must not end the only sweeper there is."""
    from screening.management.commands import sweep

    ticks = []

    def tick():
        ticks.append(1)
        if len(ticks) == 1:
            raise RuntimeError("database is locked")
        raise KeyboardInterrupt  # stop the loop after its second tick

    monkeypatch.setattr(sweep, "sweep_stuck_predictions", tick)
    monkeypatch.setattr(sweep.time, "sleep", lambda seconds: None)
    with pytest.raises(KeyboardInterrupt):
        call_command("sweep", "--every", "60", stdout=io.StringIO())
    assert len(ticks) == 2
