"""Sick S3 endpoints on 127.0.0.1 that ``FaultProxy`` cannot play: one that accepts connections
and never answers, one that resets every connection it accepts, and one that answers the
pre-flight but never a PUT."""

from __future__ import annotations

import socket
import struct
import threading
from typing import TYPE_CHECKING, Literal, Self

if TYPE_CHECKING:
    from types import TracebackType


class SickEndpoint:
    """``silent``: accept and hold every connection, never send a byte (a hung server behind a
    load balancer). ``reset``: accept, then close with RST (SO_LINGER 0). ``hang-put``: answer
    GETs (the pre-flight) with ``NoSuchKey``, hold every PUT without answering.

    ``reached`` is set once a connection was held (``silent``) or a PUT arrived (``hang-put``).
    """

    def __init__(self, behaviour: Literal["silent", "reset", "hang-put"]) -> None:
        self.behaviour = behaviour
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self._listener.settimeout(0.1)
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="sick-endpoint", daemon=True)
        self.accepted = 0
        self.reached = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            if self.behaviour == "silent":
                self._held.append(conn)
                self.reached.set()
                continue
            if self.behaviour == "hang-put":
                self._held.append(conn)
                threading.Thread(target=self._answer_get, args=(conn,), daemon=True).start()
                continue
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    def _answer_get(self, conn: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            try:
                chunk = conn.recv(4096)
            except OSError:
                return
            if not chunk:
                return
            head += chunk
        if head.startswith(b"PUT"):
            self.reached.set()
            return  # never answer
        body = b"<Error><Code>NoSuchKey</Code><Message>none</Message></Error>"
        conn.sendall(
            b"HTTP/1.1 404 Not Found\r\nContent-Type: application/xml\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        conn.close()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()
        for conn in self._held:
            conn.close()
