"""Request bodies sent with `Transfer-Encoding: chunked` (dicomweb-client and Orthanc's DICOMweb plugin
send every STOW-RS body over about 1 MB that way).

Django reads a request body through a stream limited to its Content-Length, which a chunked request has
not: it reads nothing. `ChunkedBodyMiddleware` gives the request a stream of the de-chunked body:

- gunicorn (and uWSGI, mod_wsgi) de-chunk the body themselves and say so with `wsgi.input_terminated`:
  the server's input, read to its end.
- Django's development server (runserver, the tests' live server) hands the socket over unchanged, behind
  a stream limited to 0 bytes: the chunks are decoded here from the socket, and whatever a view left
  unread is read after the answer, so the next request on a kept-alive connection starts where it should.

A server that does neither gets 411 Length Required, never an empty body taken for a real one.
"""

from __future__ import annotations

from collections.abc import Callable

from django.core.exceptions import BadRequest
from django.core.handlers.wsgi import LimitedStream
from django.http import HttpRequest, HttpResponse, JsonResponse

_LINE_LIMIT = 4096
_READ_LIMIT = 1 << 20


class ChunkError(BadRequest):
    """The chunked encoding itself is broken (not the body it carries): 400."""


class Dechunked:
    """A readable stream of the body carried by an HTTP/1.1 chunked encoding on `readline`/`read`."""

    def __init__(self, read: Callable[[int], bytes], readline: Callable[[int], bytes]):
        self._read, self._readline = read, readline
        self._left = 0  # bytes left in the current chunk
        self._done = False

    def _line(self) -> bytes:
        line = self._readline(_LINE_LIMIT + 1)
        if len(line) > _LINE_LIMIT or not line.endswith(b"\n"):
            raise ChunkError("a chunk-size line is too long or the body ended early")
        return line.rstrip(b"\r\n")

    def _next_chunk(self) -> None:
        size = self._line().split(b";", 1)[0].strip()
        try:
            self._left = int(size, 16)
        except ValueError:
            raise ChunkError("a chunk size is not a hexadecimal number") from None
        if self._left < 0:
            raise ChunkError("a chunk size is negative")
        if self._left == 0:
            while self._line():  # trailer fields, up to the empty line
                pass
            self._done = True

    def read(self, size: int = -1) -> bytes:
        out = []
        wanted = size if size is not None and size >= 0 else None
        while not self._done and (wanted is None or wanted > 0):
            if self._left == 0:
                self._next_chunk()
                continue
            # Never more than 1 MB a read: a chunk may claim any size, and a read of n bytes allocates n.
            n = min(self._left, _READ_LIMIT if wanted is None else min(wanted, _READ_LIMIT))
            data = self._read(n)
            if not data:
                raise ChunkError("the body ended inside a chunk")
            out.append(data)
            self._left -= len(data)
            if wanted is not None:
                wanted -= len(data)
            if self._left == 0 and self._line():
                raise ChunkError("a chunk is longer than its size")
        return b"".join(out)

    def close(self) -> None:
        """Django closes a request's stream once it has read the body; the socket is the server's."""

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


def is_chunked(request: HttpRequest) -> bool:
    return "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower()


class ChunkedBodyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not is_chunked(request):
            return self.get_response(request)
        server_input = request.META.get("wsgi.input")
        if request.META.get("wsgi.input_terminated"):
            request._stream = server_input
            return self.get_response(request)
        if not isinstance(server_input, LimitedStream) or not hasattr(server_input, "_readline"):
            return JsonResponse(
                {"error": {"code": "length_required", "message": "this server cannot read chunked request bodies"}},
                status=411,
            )
        # Django's development server: LimitedStream(socket file, 0) keeps the socket's own read/readline.
        body = Dechunked(server_input._read, server_input._readline)
        request._stream = body
        try:
            return self.get_response(request)
        finally:
            try:
                body.drain()
            except (ChunkError, OSError):
                pass
