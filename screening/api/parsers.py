"""A DICOM file as the whole request body (`Content-Type: application/dicom`), as Orthanc's
`POST /instances` takes it: no multipart framing to parse, streamed to a temporary file in
1 MB chunks and hashed on the way (ingest reads neither the file nor its digest again)."""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.files.uploadedfile import TemporaryUploadedFile
from rest_framework.parsers import BaseParser, DataAndFiles

from screening.errors import StorageFull, TooLarge, is_disk_full
from screening.intake.services.ingest_validation import megabytes

_CHUNK = 1 << 20


class DicomFileParser(BaseParser):
    media_type = "application/dicom"

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.PORTAL_MAX_UPLOAD_BYTES
        request = (parser_context or {}).get("request")
        declared = int((request.META.get("CONTENT_LENGTH") or 0) if request is not None else 0)
        if declared > limit:  # refused before a byte is read
            raise TooLarge(f"the file is {megabytes(declared)}; the limit is {megabytes(limit)}")
        target = TemporaryUploadedFile("upload.dcm", self.media_type, 0, None)
        digest, size = hashlib.sha256(), 0
        try:
            while stream is not None and (chunk := stream.read(_CHUNK)):
                size += len(chunk)
                if size > limit:
                    raise TooLarge(f"the file is over the limit of {megabytes(limit)}")
                target.write(chunk)
                digest.update(chunk)
            target.flush()
        except OSError as exc:
            target.close()  # the temporary file goes with its handle
            if is_disk_full(exc):
                raise StorageFull() from exc
            raise
        except BaseException:
            target.close()
            raise
        target.size, target.sha256 = size, digest.hexdigest()
        target.seek(0)
        return DataAndFiles({}, {"file": target})
