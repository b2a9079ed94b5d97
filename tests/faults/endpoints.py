"""Sick S3 endpoints on 127.0.0.1 that ``FaultProxy`` cannot play: one that accepts connections
and never answers, and one that resets every connection it accepts."""

from __future__ import annotations

import socket
import struct
import threading
from typing import TYPE_CHECKING, Literal, Self

if TYPE_CHECKING:
    from types import TracebackType


class SickEndpoint:
    """``silent``: accept and hold every connection, never send a byte (a hung server behind a
    load balancer). ``reset``: accept, then close with RST (SO_LINGER 0)."""

    def __init__(self, behaviour: Literal["silent", "reset"]) -> None:
        self.behaviour = behaviour
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self._listener.settimeout(0.1)
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="sick-endpoint", daemon=True)
        self.accepted = 0

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
                continue
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
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
