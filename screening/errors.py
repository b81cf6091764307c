"""The one application error a service raises, with a message people can act on.

The API renders it as the JSON error shape; pages show `message` beside the form
or the file it concerns.
"""

from __future__ import annotations


class PortalError(Exception):
    def __init__(self, message: str, *, code: str = "invalid", status: int = 400, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.field = field


class TooLarge(PortalError):
    def __init__(self, message: str):
        super().__init__(message, code="too_large", status=413)


class UnsupportedMedia(PortalError):
    def __init__(self, message: str):
        super().__init__(message, code="unsupported_media", status=415)


class Conflict(PortalError):
    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message, code="conflict", status=409, field=field)


class StorageFull(PortalError):
    """The portal's disk is full (ENOSPC, EDQUOT): nothing was kept; the sender may try again later."""

    def __init__(self):
        super().__init__(
            "the portal's storage is full: nothing was stored; try again later or tell an admin",
            code="storage_full",
            status=503,
        )


NO_SPACE = (28, 122)  # errno.ENOSPC, errno.EDQUOT


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in NO_SPACE
