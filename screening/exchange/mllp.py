"""MLLP (HL7's Minimal Lower Layer Protocol, release 2): one message out, its acknowledgement back.

A block is 0x0B, the message, 0x1C 0x0D. The client connects, sends one block and reads until a whole
block has come back (bytes before its start are skipped, as the protocol allows), within `timeout`
seconds from the send; a closed connection, silence or an answer larger than MAX_ANSWER is an error
(ConnectionError or TimeoutError), never a hang.
"""

from __future__ import annotations

import socket
import time

START = b"\x0b"
END = b"\x1c\x0d"
MAX_ANSWER = 1 << 20  # an acknowledgement is a few hundred bytes; a peer that sends more is not answering
CONNECT_TIMEOUT = 10.0


def frame(payload: bytes) -> bytes:
    return START + payload + END


def unframe(buffer: bytes) -> bytes | None:
    """The first whole block's content in `buffer`, or None while it is incomplete."""
    start = buffer.find(START)
    if start < 0:
        return None
    end = buffer.find(END, start + 1)
    return None if end < 0 else buffer[start + 1 : end]


def exchange(host: str, port: int, payload: bytes, *, timeout: float) -> bytes:
    """Send `payload` framed; return the content of the block the peer answers with."""
    try:
        sock = socket.create_connection((host, port), timeout=min(CONNECT_TIMEOUT, timeout))
    except OSError as exc:
        raise ConnectionError(f"could not connect ({type(exc).__name__})") from exc
    with sock:
        deadline = time.monotonic() + timeout
        sock.settimeout(timeout)
        try:
            sock.sendall(frame(payload))
        except OSError as exc:
            raise ConnectionError(f"the connection failed while sending ({type(exc).__name__})") from exc
        buffer = b""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no acknowledgement within {timeout:g} s")
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                raise TimeoutError(f"no acknowledgement within {timeout:g} s") from None
            except OSError as exc:
                raise ConnectionError(
                    f"the connection failed before the acknowledgement ({type(exc).__name__})"
                ) from exc
            if not chunk:
                what = "an incomplete MLLP block" if START in buffer else "no MLLP block"
                raise ConnectionError(f"the peer closed the connection after {what}")
            buffer += chunk
            block = unframe(buffer)
            if block is not None:
                return block
            if len(buffer) > MAX_ANSWER:
                raise ConnectionError(f"the answer passed {MAX_ANSWER} bytes without an MLLP block")
