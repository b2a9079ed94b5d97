"""Sick S3 endpoints on 127.0.0.1 that ``FaultProxy`` cannot play: one that accepts connections
and never answers, one that resets every connection it accepts, and one that answers the
pre-flight but never a PUT; and ``LocalListener``, the accept loop they (and ``tls.TlsFront``)
are built on."""

from __future__ import annotations

import socket
import struct
import threading
from typing import TYPE_CHECKING, Literal, Self

if TYPE_CHECKING:
    from types import TracebackType


class LocalListener:
    """A TCP listener on 127.0.0.1 that hands each accepted connection to ``on_connection``,
    from a thread of its own, while the ``with`` block runs."""

    thread_name = "local-listener"

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=self.thread_name, daemon=True)

    def on_connection(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def on_close(self) -> None:
        """After the listener closed: release what the connections still hold."""

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.on_connection(conn)

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
        self.on_close()


class SickEndpoint(LocalListener):
    """``silent``: accept and hold every connection, never send a byte (a hung server behind a
    load balancer). ``reset``: accept, then close with RST (SO_LINGER 0). ``hang-put``: answer
    GETs (the pre-flight) with ``NoSuchKey``, hold every PUT without answering.

    ``reached`` is set once a connection was held (``silent``) or a PUT arrived (``hang-put``).
    """

    thread_name = "sick-endpoint"

    def __init__(self, behaviour: Literal["silent", "reset", "hang-put"]) -> None:
        super().__init__()
        self.behaviour = behaviour
        self._held: list[socket.socket] = []
        self.accepted = 0
        self.reached = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def on_connection(self, conn: socket.socket) -> None:
        self.accepted += 1
        if self.behaviour == "silent":
            self._held.append(conn)
            self.reached.set()
            return
        if self.behaviour == "hang-put":
            self._held.append(conn)
            threading.Thread(target=self._answer_get, args=(conn,), daemon=True).start()
            return
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()

    def on_close(self) -> None:
        for conn in self._held:
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
