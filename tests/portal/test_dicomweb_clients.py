"""DICOMweb against real clients with their defaults: dicomweb-client's chunked STOW-RS (every body over
1 MB), under Django's development server (the live server) and under gunicorn; boundaries longer than
RFC 2046's 70 characters, as Orthanc's DICOMweb plugin sends."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from django.db import connection
from rest_framework.authtoken.models import Token

from screening.models import Image
from tests.dicom_factory import mg_dataset, phantom, to_bytes

live = pytest.mark.django_db(transaction=True, serialized_rollback=True)
ROOT = Path(__file__).resolve().parents[2]


def token_session(user) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Token {Token.objects.get_or_create(user=user)[0].key}"
    return session


def large_mg(seed: int, **kwargs) -> pydicom.Dataset:
    """A 1.6 MB mammogram, read back from a file (dicomweb-client writes it with its preamble)."""
    return pydicom.dcmread(io.BytesIO(to_bytes(mg_dataset(phantom(1024, 800, seed=seed), seed=seed, **kwargs))))


def value(dataset: dict, tag: str):
    return dataset.get(tag, {}).get("Value", [None])[0]


@live
def test_dicomweb_client_stores_a_study_chunked_under_the_development_server(live_server, radiologist):
    client = DICOMwebClient(url=f"{live_server.url}/dicomweb", session=token_session(radiologist))
    first, second = large_mg(1, laterality="L"), large_mg(2, laterality="R")
    answer = client.store_instances([first, second])  # 3.2 MB: sent with Transfer-Encoding: chunked
    assert [item.ReferencedSOPInstanceUID for item in answer.ReferencedSOPSequence] == [
        first.SOPInstanceUID,
        second.SOPInstanceUID,
    ]
    assert "FailedSOPSequence" not in answer
    assert Image.objects.count() == 2
    # The same kept-alive connection carries on with the next request.
    assert (
        client.search_for_instances(first.StudyInstanceUID)
        and client.retrieve_instance(first.StudyInstanceUID, first.SeriesInstanceUID, first.SOPInstanceUID).PixelData
        == first.PixelData
    )


@live
def test_a_refused_chunked_body_leaves_the_connection_usable(live_server, radiologist):
    session = token_session(radiologist)
    url = f"{live_server.url}/dicomweb/studies"

    def chunks():
        yield b"--B\r\nContent-Type: application/dicom\r\n\r\n"
        yield b"x" * 100_000

    refused = session.post(url, data=chunks(), headers={"Content-Type": "application/json"})
    assert refused.status_code == 415
    assert session.get(url).status_code == 200  # the next request on the connection is read as one


@live
def test_a_broken_chunked_encoding_is_a_400(live_server, radiologist):
    import socket

    token = Token.objects.get_or_create(user=radiologist)[0].key
    host, port = live_server.thread.host, live_server.thread.port
    request = (
        "POST /dicomweb/studies HTTP/1.1\r\n"
        f"Host: {host}\r\nAuthorization: Token {token}\r\nTransfer-Encoding: chunked\r\n"
        'Content-Type: multipart/related; type="application/dicom"; boundary=B\r\n\r\n'
        "zz\r\n--B\r\n\r\n0\r\n\r\n"
    ).encode()
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        # The status line and the body may come in separate packets: read until the body has arrived (or the
        # server closes the connection), not only the first packet.
        while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < _content_length(answer):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    text = answer.decode("latin-1")
    assert text.startswith("HTTP/1.1 400") and "malformed_multipart" in text


def _content_length(answer: bytes) -> int:
    for line in answer.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 1  # no length given: at least one byte of body


def test_stow_takes_a_boundary_longer_than_70_characters(api):
    mark = "OrthancDicomWebBoundary-" + "7" * 49  # 73 characters, as Orthanc's plugin sends
    body = f"--{mark}\r\nContent-Type: application/dicom\r\n\r\n".encode() + to_bytes(mg_dataset())
    body += f"\r\n--{mark}--\r\n".encode()
    content_type = f'multipart/related; type="application/dicom"; boundary="{mark}"'
    response = api.generic("POST", "/dicomweb/studies", data=body, content_type=content_type)
    assert response.status_code == 200, response.content
    assert Image.objects.count() == 1


@pytest.fixture
def gunicorn(live_server, tmp_path, media_root):
    """gunicorn serving the portal on the test database (PostgreSQL) and media folder, tasks in-process."""
    if connection.vendor != "postgresql":
        pytest.skip("gunicorn shares the test database only on PostgreSQL")
    from tests.dicom_peers import free_port

    settings_dict = connection.settings_dict
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CELERY_BROKER_URL")},
        "DATABASE_URL": (
            f"postgres://{settings_dict['USER']}@{settings_dict['HOST'] or 'localhost'}:"
            f"{settings_dict['PORT'] or 5432}/{settings_dict['NAME']}"
        ),
        "PORTAL_MEDIA_ROOT": str(media_root),
        "PORTAL_VAR_DIR": str(tmp_path / "var"),
        "PORTAL_GC_FREEZE": "0",
    }
    sys.path.insert(0, str(ROOT))
    from bench._server import start_gunicorn

    process = start_gunicorn(env, port, workers=1)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(30)


@live
def test_dicomweb_client_stores_chunked_under_gunicorn(gunicorn, radiologist, media_root):
    client = DICOMwebClient(url=f"{gunicorn}/dicomweb", session=token_session(radiologist))
    ds = large_mg(3)
    answer = client.store_instances([ds])
    assert answer.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == ds.SOPInstanceUID
    image = Image.objects.get(sop_uid=ds.SOPInstanceUID)
    assert pydicom.dcmread(media_root / image.original.name).PixelData == ds.PixelData


def test_the_stow_answer_names_the_study_and_each_instance_to_retrieve(api):
    ds = mg_dataset()
    body = b"--XYZ\r\nContent-Type: application/dicom\r\n\r\n" + to_bytes(ds) + b"\r\n--XYZ--\r\n"
    content_type = 'multipart/related; type="application/dicom"; boundary=XYZ'
    answer = api.generic("POST", "/dicomweb/studies", data=body, content_type=content_type).json()
    assert value(answer, "00081190") == f"http://testserver/dicomweb/studies/{ds.StudyInstanceUID}"
    stored = answer["00081199"]["Value"][0]
    assert value(stored, "00081190").endswith(f"/instances/{ds.SOPInstanceUID}")
    assert value(stored, "00081150") == ds.SOPClassUID


@live
def test_a_chunked_body_elsewhere_is_a_client_error_never_a_500(live_server, radiologist):
    session = token_session(radiologist)

    def chunks():
        yield b'{"study": 1, '
        yield b'"x": "' + b"y" * 200_000 + b'"}'

    for path in ("/api/v1/images/", "/api/v1/auth/token/"):
        response = session.post(live_server.url + path, data=chunks(), headers={"Content-Type": "application/json"})
        assert 400 <= response.status_code < 500, (path, response.status_code)
    assert session.get(f"{live_server.url}/dicomweb/studies").status_code == 200


def test_a_chunk_claiming_any_size_is_read_a_megabyte_at_a_time():
    from portal.chunked import ChunkError, Dechunked

    source = io.BytesIO(b"fffffffffffffff\r\n" + b"x" * 3_000_000)
    asked = []

    def read(n):
        asked.append(n)
        return source.read(n)

    body = Dechunked(read, source.readline)
    with pytest.raises(ChunkError):
        body.read()  # the body ends long before the chunk's claimed size
    assert max(asked) <= 1 << 20 and sum(asked) > 3_000_000 - (1 << 20)
