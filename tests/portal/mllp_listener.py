"""A RIS for the tests: a real MLLP listener on a local port (a socket server thread) that records what it
receives and answers as it is told: AA, AE or AR, silence, a closed connection, garbage, or the
acknowledgement of another message."""

from __future__ import annotations

import socket
import threading
import time

START, END = b"\x0b", b"\x1c\x0d"


def ack(control_id: str, code: str = "AA", text: str = "") -> bytes:
    segments = [
        "MSH|^~\\&|RIS|HOSPITAL|SCREENING||20261206120000||ACK^R01^ACK|ACK0001|P|2.5.1",
        f"MSA|{code}|{control_id}" + (f"|{text}" if text else ""),
    ]
    if code != "AA":
        segments.append(f"ERR||||E||||{text or 'refused'}")
    return ("\r".join(segments) + "\r").encode()


def control_id_of(message: bytes) -> str:
    msh = message.split(b"\r", 1)[0].decode("utf-8").split("|")
    return msh[9]


class Ris:
    """`answer`: "AA", "AE", "AR", "silent" (keeps the connection open, says nothing), "close" (closes once
    the message is in), "garbage" (bytes that are no MLLP block, then closes), "framed-garbage" (an MLLP
    block that is no HL7 message), "other" (an AA for another message), "trickle" (a byte of no block every
    0.1 s, for up to 20 s), "flood" (2 MB with no block), "prefixed" (bytes before an AA's block)."""

    def __init__(self, answer: str = "AA"):
        self.answer = answer
        self.received: list[bytes] = []  # each connection's bytes, framing included
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(4)
        self._server.settimeout(0.2)
        self.port = self._server.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def messages(self) -> list[bytes]:
        """The HL7 message in each block received (framing off)."""
        return [raw[raw.index(START) + 1 : raw.rindex(END)] for raw in self.received if END in raw]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._server.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            with conn:
                self._handle(conn)

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        data = b""
        while END not in data:
            try:
                chunk = conn.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
        self.received.append(data)
        if END not in data or self.answer == "close":
            return
        message = data[data.index(START) + 1 : data.rindex(END)]
        control_id = control_id_of(message)
        if self.answer == "silent":
            try:
                conn.recv(1)  # until the client gives up and closes
            except OSError:
                pass
            return
        if self.answer == "garbage":
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\nnot mllp at all")
            return
        if self.answer == "framed-garbage":
            conn.sendall(START + b"\x00\xffthis is no HL7" + END)
            return
        if self.answer == "trickle":
            for _ in range(200):
                try:
                    conn.sendall(b".")
                except OSError:
                    return  # the client gave up
                time.sleep(0.1)
            return
        if self.answer == "flood":
            try:
                conn.sendall(b"x" * 2_000_000)
            except OSError:
                pass
            return
        if self.answer == "prefixed":
            conn.sendall(b"\r\n\x00noise" + START + ack(control_id) + END)
            return
        if self.answer == "other":
            conn.sendall(START + ack("SOMEONEELSE") + END)
            return
        text = "" if self.answer == "AA" else "Unknown order"
        conn.sendall(START + ack(control_id, self.answer, text) + END)
