"""A live status line on a terminal (text logs only; never in cron mail, pipes, JSON mode or on
a ``TERM=dumb`` terminal: ``app`` decides).

Modelled on rclone's stats line: bytes done (counting the parts of multipart uploads in
flight) against the total the scan found, percentage, rate and ETA, then files. The scan
reports each window of eligible files (``FilesFound``), so totals are known for free; while a
scan is still going they are the totals so far, and the percentage and ETA are left out.

Cheap by construction, because a run of small files emits an event per file: an event only
updates counters; a background thread redraws the line at most ``REFRESH_PER_SECOND`` times a
second. Log lines are written above the line (``line_stream``), queued and written with the
next redraw in one write (a write per line to a terminal costs more than a small upload).
The line appears with the first upload (no flicker for runs with nothing to do); ``stop()``
erases it and shows the cursor again, which every exit path calls (end of run, exception,
second signal, grace period over).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Self

from spool_tool.events import (
    BytesSent,
    Event,
    ExitingNow,
    FileFailed,
    FilesFound,
    FileUploaded,
    RunFinished,
)

if TYPE_CHECKING:
    from pathlib import Path
    from types import TracebackType

REFRESH_PER_SECOND = 5
HIDE_CURSOR, SHOW_CURSOR, ERASE_LINE = "\x1b[?25l", "\x1b[?25h", "\r\x1b[2K"


class ProgressDisplay:
    """An event listener drawing the status line on ``stream`` (a terminal)."""

    def __init__(self, stream: IO[str], *, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self._clock = clock
        self._lock = threading.Lock()  # one writer at a time on the terminal
        self._pending: list[str] = []  # log lines to write before the next redraw
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self._started = 0.0
        self.files_done = self.bytes_done = self.failed = 0
        self.files_total = self.bytes_total = 0
        self._in_flight: dict[Path, int] = {}  # bytes of multipart uploads not finished yet
        self._in_flight_bytes = 0
        self._scanning: set[Path] = set()  # spools whose scan has not finished

    # -- listener (called under the bus lock: counters only) ------------------------------------

    def __call__(self, event: Event) -> None:
        match event:
            case FilesFound(spool_dir=spool, files=files, bytes=size, complete=complete):
                self.files_total += files
                self.bytes_total += size
                (self._scanning.discard if complete else self._scanning.add)(spool)
                return
            case BytesSent(path=path, bytes=size):
                self._in_flight[path] = self._in_flight.get(path, 0) + size
                self._in_flight_bytes += size
            case FileUploaded(path=path, size=size):
                self._in_flight_bytes -= self._in_flight.pop(path, 0)
                self.files_done += 1
                self.bytes_done += size
            case FileFailed(path=path):
                self._in_flight_bytes -= self._in_flight.pop(path, 0)
                self.failed += 1
            case RunFinished() | ExitingNow():
                self.stop()
                return
            case _:
                return
        if self._thread is None and not self._stopped.is_set():
            self._start()

    # -- the line -----------------------------------------------------------------------------

    def line(self) -> str:
        """The status line's text, e.g. ``12.3 MB / 40.0 MB, 31%, 4.1 MB/s, ETA 7s; files
        120 / 400, 2 failed; 3s``."""
        elapsed = max(self._clock() - self._started, 1e-6)
        done = self.bytes_done + self._in_flight_bytes
        rate = done / elapsed
        parts = [f"{_size(done)} / {_size(self.bytes_total)}"]
        final = not self._scanning and self.bytes_total > 0
        if final:
            parts.append(f"{min(100, 100 * done // self.bytes_total)}%")
        parts.append(f"{_size(rate)}/s")
        if final and rate > 0:
            parts.append(f"ETA {_duration(max(self.bytes_total - done, 0) / rate)}")
        files = f"files {self.files_done} / {self.files_total}"
        if self.failed:
            files += f", {self.failed} failed"
        return f"{', '.join(parts)}; {files}; {_duration(elapsed)}"

    def line_stream(self) -> LineStream:
        """A text stream for log lines that prints them above the status line."""
        return LineStream(self)

    def write_above(self, text: str) -> None:
        """Queue a log line; the next redraw (at most 1/REFRESH_PER_SECOND s away) writes the
        queued lines and the status line in one write: a terminal write per file would cost
        more than the upload of a small file."""
        with self._lock:
            if self._thread is not None and not self._stopped.is_set():
                self._pending.append(text)
                return
            self.stream.write(text)
            self.stream.flush()

    def _start(self) -> None:
        self._started = self._clock()
        with self._lock:
            self.stream.write(HIDE_CURSOR)
        self._thread = threading.Thread(target=self._refresh, name="progress", daemon=True)
        self._thread.start()

    def _refresh(self) -> None:
        while not self._stopped.is_set():
            self._draw()
            self._stopped.wait(1 / REFRESH_PER_SECOND)

    def _draw(self) -> None:
        try:
            width = os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, ValueError):
            width = 80
        text = self.line()[: max(width - 1, 1)]  # never wrap: \r must reach the line's start
        with self._lock:
            if not self._stopped.is_set():
                self.stream.write(f"{ERASE_LINE}{self._take_pending()}{text}")
                self.stream.flush()

    def _take_pending(self) -> str:
        lines, self._pending = "".join(self._pending), []
        return lines

    def stop(self) -> None:
        """Erase the line and show the cursor again (idempotent; safe from any thread)."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self._thread is None:
            return
        with self._lock:
            self.stream.write(ERASE_LINE + self._take_pending() + SHOW_CURSOR)
            self.stream.flush()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class LineStream:
    """What the log writer writes to while the status line is live."""

    def __init__(self, display: ProgressDisplay) -> None:
        self.display = display

    def write(self, text: str) -> int:
        self.display.write_above(text)
        return len(text)

    def flush(self) -> None:
        return None


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:  # noqa: PLR2004
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _duration(seconds: float) -> str:
    whole = int(seconds)
    if whole < 60:  # noqa: PLR2004
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:  # noqa: PLR2004
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
