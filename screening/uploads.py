"""Upload handlers that hash each file while Django streams it from the request.

An upload is read from the socket once: written to its temporary file (or memory)
and hashed in the same pass, so ingest knows its SHA-256 (the dedup key) without
reading the file again, and local storage then moves the temporary file into place.
The digest travels on the uploaded file as `sha256` (see `services.media.known_sha256`).
"""

from __future__ import annotations

import hashlib

from django.core.files.uploadhandler import MemoryFileUploadHandler, TemporaryFileUploadHandler


class HashingMemoryFileUploadHandler(MemoryFileUploadHandler):
    """Small uploads (FILE_UPLOAD_MAX_MEMORY_SIZE) held in memory, hashed as they arrive."""

    def new_file(self, *args, **kwargs):
        self.digest = hashlib.sha256()
        super().new_file(*args, **kwargs)  # the memory handler raises StopFutureHandlers when it takes the file

    def receive_data_chunk(self, raw_data, start):
        if self.activated:
            self.digest.update(raw_data)
        return super().receive_data_chunk(raw_data, start)

    def file_complete(self, file_size):
        uploaded = super().file_complete(file_size)
        if uploaded is not None:
            uploaded.sha256 = self.digest.hexdigest()
        return uploaded


class HashingTemporaryFileUploadHandler(TemporaryFileUploadHandler):
    """Larger uploads streamed to a temporary file, hashed as they are written."""

    def new_file(self, *args, **kwargs):
        self.digest = hashlib.sha256()
        super().new_file(*args, **kwargs)  # the memory handler raises StopFutureHandlers when it takes the file

    def receive_data_chunk(self, raw_data, start):
        self.digest.update(raw_data)
        return super().receive_data_chunk(raw_data, start)

    def file_complete(self, file_size):
        uploaded = super().file_complete(file_size)
        uploaded.sha256 = self.digest.hexdigest()
        return uploaded
