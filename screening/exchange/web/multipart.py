"""multipart/related: the streaming parser STOW-RS reads and the writer WADO-RS answers with."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

from django.core.exceptions import BadRequest
from django.core.files.uploadedfile import TemporaryUploadedFile

from screening.errors import PortalError, StorageFull, UnsupportedMedia, is_disk_full

MAX_PARTS = 1000
MAX_BOUNDARY = 200
_CHUNK = 1 << 20
_HEADER_LIMIT = 16 * 1024


class Malformed(PortalError):
    def __init__(self, message: str):
        super().__init__(message, code="malformed_multipart", status=400)


def boundary(content_type: str) -> bytes:
    """The boundary of a STOW-RS body: multipart/related; type="application/dicom" or 415."""
    media, _, rest = content_type.partition(";")
    params = {}
    for item in rest.split(";"):
        key, _, value = item.strip().partition("=")
        params[key.strip().lower()] = value.strip().strip('"')
    if media.strip().lower() != "multipart/related" or params.get("type", "application/dicom").lower() != (
        "application/dicom"
    ):
        raise UnsupportedMedia('STOW-RS takes multipart/related; type="application/dicom"')
    found = params.get("boundary", "")
    # RFC 2046 says at most 70 characters; real clients send longer ones (Orthanc's DICOMweb plugin: 73).
    if not found or len(found) > MAX_BOUNDARY or not all(33 <= ord(c) < 127 or c == " " for c in found):
        raise Malformed(f"the multipart body has no valid boundary (1 to {MAX_BOUNDARY} printable characters)")
    return found.encode("latin-1")


class Part:
    def __init__(self, headers: dict[str, str], file: TemporaryUploadedFile, too_large: bool):
        self.headers, self.file, self.too_large = headers, file, too_large


def _write(target, body: bytes) -> None:
    try:
        target.write(body)
    except OSError as exc:  # the temporary file is closed (and so removed) by iter_parts
        if is_disk_full(exc):
            raise StorageFull() from exc
        raise


def iter_parts(stream, boundary: bytes, limit: int) -> Iterator[Part]:
    """Parse a multipart body from a stream, one part at a time, each written to a temporary file
    (never the whole body in memory) and hashed on the way (`sha256` on the part's file). A part
    over `limit` bytes is drained and marked too large."""
    delimiter = b"\r\n--" + boundary
    buffer = b"\r\n"  # so the first delimiter looks like every other
    eof = False

    def fill() -> None:
        nonlocal buffer, eof
        try:
            chunk = stream.read(_CHUNK)
        except BadRequest:  # a broken chunked transfer encoding (portal.chunked)
            raise Malformed("the request body's chunked transfer encoding is broken") from None
        if not chunk:
            eof = True
        buffer += chunk

    while (i := buffer.find(delimiter)) < 0:  # the preamble
        if eof:
            raise Malformed("the multipart body holds no part")
        buffer = buffer[-(len(delimiter) - 1) :]
        fill()
    buffer = buffer[i + len(delimiter) :]
    count = 0
    while True:
        while len(buffer) < 2 and not eof:
            fill()
        if buffer.startswith(b"--"):
            return
        while (j := buffer.find(b"\r\n")) < 0:
            if eof or len(buffer) > 1024:
                raise Malformed("a multipart delimiter line is not terminated")
            fill()
        buffer = buffer[j + 2 :]
        while not buffer.startswith(b"\r\n") and (j := buffer.find(b"\r\n\r\n")) < 0:
            if eof or len(buffer) > _HEADER_LIMIT:
                raise Malformed("a part's headers are not terminated")
            fill()
        if buffer.startswith(b"\r\n"):
            raw, buffer = b"", buffer[2:]
        else:
            raw, buffer = buffer[:j], buffer[j + 4 :]
        headers = {}
        for line in raw.decode("latin-1").split("\r\n"):
            key, sep, value = line.partition(":")
            if not sep:
                raise Malformed("a part's header line has no colon")
            headers[key.strip().lower()] = value.strip()
        count += 1
        if count > MAX_PARTS:
            raise Malformed(f"more than {MAX_PARTS} parts in one request")
        target = TemporaryUploadedFile("stow.dcm", "application/dicom", 0, None)
        digest = hashlib.sha256()  # hashed as it is written: ingest does not read the part again for it
        written, too_large = 0, False
        try:
            while True:
                i = buffer.find(delimiter)
                body = buffer[:i] if i >= 0 else buffer[: max(0, len(buffer) - len(delimiter) + 1)]
                if written + len(body) > limit:
                    too_large = True
                elif body:
                    _write(target, body)
                    digest.update(body)
                written += len(body)
                if i >= 0:
                    buffer = buffer[i + len(delimiter) :]
                    break
                buffer = buffer[len(body) :]
                if eof:
                    raise Malformed("the multipart body ends inside a part")
                fill()
            target.flush()
            target.size = written
            target.sha256 = digest.hexdigest()
            target.seek(0)
            yield Part(headers, target, too_large)
        finally:
            target.close()


def write(parts: Iterable[tuple[str, Iterator[bytes]]], boundary: str) -> Iterator[bytes]:
    """A multipart/related body of `parts` (each its Content-Type and an iterator of byte chunks), streamed."""
    for content_type, chunks in parts:
        yield f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode()
        yield from chunks
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode()
