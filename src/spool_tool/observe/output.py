"""The command's own output on stdout: dry-run intentions and the ``--status`` table or document.

Log lines go to stderr and never stop a run (``logs.py``). Output is the answer the user asked
for, so a write that fails is an ``OutputError`` the CLI reports on one line (exit 1) instead of
a traceback from deep in a listener. After a failure, ``/dev/null`` takes the place of the
stream's file descriptor, so that what is still buffered, and the interpreter's final flush,
go nowhere instead of failing again (as Python's documentation advises for EPIPE).
"""

from __future__ import annotations

import io
import os
from typing import IO

from spool_tool.errors import OutputError


class CheckedOutput(io.TextIOBase):
    """A text stream (stdout) whose failed writes raise ``OutputError``."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__()
        self._stream = stream

    def write(self, text: str, /) -> int:
        try:
            return self._stream.write(text)
        except OSError as exc:
            raise self._failed(exc) from exc

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            raise self._failed(exc) from exc

    def isatty(self) -> bool:
        return self._stream.isatty()

    def _failed(self, exc: OSError) -> OutputError:
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, self._stream.fileno())
            os.close(null)
        except (OSError, ValueError, AttributeError):  # not a file (a test's StringIO)
            pass
        return OutputError(exc.errno, exc.strerror or str(exc))
