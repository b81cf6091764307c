"""Upload handlers that hash each file while Django streams it from the request.

An upload is read from the socket once: written to its temporary file (or memory)
and hashed in the same pass, so ingest knows its SHA-256 (the dedup key) without
reading the file again, and local storage then moves the temporary file into place.
The digest travels on the uploaded file as `sha256` (see `services.media.known_sha256`).
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.files.uploadhandler import MemoryFileUploadHandler, TemporaryFileUploadHandler

from screening.errors import StorageFull, TooLarge, is_disk_full

# What a multipart body may carry beside its one file: the boundaries, part headers and the form fields.
MULTIPART_OVERHEAD = 1_000_000


class UploadTooLarge(TooLarge, RequestDataTooBig):
    """A file over PORTAL_MAX_UPLOAD_BYTES, refused while it streams in: the API answers 413 (a PortalError);
    a page view gets Django's 400 for a body too big (RequestDataTooBig), never a 500."""


def _too_large(size: int | None = None) -> UploadTooLarge:
    from screening.intake.services.ingest_validation import megabytes

    limit = megabytes(settings.PORTAL_MAX_UPLOAD_BYTES)
    if size is None:  # still streaming in: its size is not known
        return UploadTooLarge(f"the file is over the limit of {limit}")
    return UploadTooLarge(f"the upload is {megabytes(size)}; the limit is {limit} a file")


class _Capped:
    """Refuse an oversized upload before it is written: at once when its Content-Length says so, else as soon
    as the bytes received pass the limit (a chunked body). It was written to disk in full before the 413."""

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        if content_length and content_length > settings.PORTAL_MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD:
            raise _too_large(content_length)
        self.received = 0
        return super().handle_raw_input(input_data, META, content_length, boundary, encoding)

    def receive_data_chunk(self, raw_data, start):
        """A full disk while the upload streams to its temporary file: 503, and the partial file goes."""
        try:
            return super().receive_data_chunk(raw_data, start)
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            self._discard()
            raise StorageFull() from exc

    def _discard(self) -> None:
        file = getattr(self, "file", None)
        if file is not None and hasattr(file, "close"):
            file.close()  # a temporary file goes with its handle

    def count(self, raw_data: bytes) -> None:
        # A file a little over the limit is still read whole, for ingest's message with its exact size.
        self.received = getattr(self, "received", 0) + len(raw_data)
        if self.received > settings.PORTAL_MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD:
            self._discard()
            raise _too_large()


class HashingMemoryFileUploadHandler(_Capped, MemoryFileUploadHandler):
    """Small uploads (FILE_UPLOAD_MAX_MEMORY_SIZE) held in memory, hashed as they arrive."""

    def new_file(self, *args, **kwargs):
        self.digest = hashlib.sha256()
        super().new_file(*args, **kwargs)  # the memory handler raises StopFutureHandlers when it takes the file

    def receive_data_chunk(self, raw_data, start):
        self.count(raw_data)
        if self.activated:
            self.digest.update(raw_data)
        return super().receive_data_chunk(raw_data, start)

    def file_complete(self, file_size):
        uploaded = super().file_complete(file_size)
        if uploaded is not None:
            uploaded.sha256 = self.digest.hexdigest()
        return uploaded


class HashingTemporaryFileUploadHandler(_Capped, TemporaryFileUploadHandler):
    """Larger uploads streamed to a temporary file, hashed as they are written."""

    def new_file(self, *args, **kwargs):
        self.digest = hashlib.sha256()
        super().new_file(*args, **kwargs)  # the memory handler raises StopFutureHandlers when it takes the file

    def receive_data_chunk(self, raw_data, start):
        self.count(raw_data)
        self.digest.update(raw_data)
        return super().receive_data_chunk(raw_data, start)

    def file_complete(self, file_size):
        uploaded = super().file_complete(file_size)
        uploaded.sha256 = self.digest.hexdigest()
        return uploaded
