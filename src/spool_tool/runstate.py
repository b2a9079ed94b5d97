"""The state of a run, in one object: whether and why it stops, and what it did.

A one-shot invocation is one cycle over every job; ``--watch`` runs cycles until a signal.
``RunState`` is shared by the phases and worker threads: they ask it whether to go on
(``stopping``) and tell it why to stop (``request_stop``); as a listener on the event bus it
counts what the current cycle did. ``end_cycle()`` hands back that cycle's frozen ``Summary``
and the next cycle starts from zero: nobody sums counters and zeroes them after the fact.

A fatal stop (bad credentials, S3 kept failing) ends the cycle; a signal ends the run: it
stays in force for every later cycle, and the first signal's stop replaces a fatal one.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator

from spool_tool.events import (
    DeleteFailed,
    Event,
    FileDeleted,
    FileFailed,
    FileUploaded,
    ManifestFailed,
    ManifestWritten,
    Mode,
    SpoolSkipped,
    Stop,
    Summary,
    ThrottleReport,
    WouldUpload,
)


class RunState:
    """Stop reason, signal and counters of a run (see the module docstring)."""

    def __init__(self, mode: Mode = "upload") -> None:
        self.mode: Mode = mode
        self._lock = threading.Lock()
        self._signal_stop: Stop | None = None  # in force for the rest of the run
        self._stop: Stop | None = None  # this cycle's
        self._counts: Counter[str] = Counter()  # by the field names of events.Counts
        self._failures: list[str] = []
        self._consecutive_transient = 0
        self._started = time.monotonic()
        self.in_flight = 0  # files being shipped now
        # Files that cannot get a key (name, inode, size, mtime), for the whole run: see
        # first_key_failure
        self._keyless: set[tuple[str, int, int, int, int]] = set()

    # -- stopping ---------------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        """Claim nothing more: a fatal error in this cycle, or a signal."""
        return self._stop is not None

    @property
    def signal(self) -> int | None:
        """The signal that stops the run (None: not asked to stop)."""
        return None if self._signal_stop is None else self._signal_stop.signal

    def request_stop(self, reason: str, signal: int | None = None) -> bool:
        """Stop claiming files; True for the first request of the cycle (the caller reports
        it). A signal's request always wins and holds for the rest of the run."""
        with self._lock:
            if signal is not None:
                first = self._signal_stop is None
                self._signal_stop = self._stop = Stop(reason, signal)
                return first
            if self._stop is None:
                self._stop = Stop(reason)
                return True
            return False

    def transient_failure(self) -> int:
        """Count a transient failure; returns how many came in a row without a success."""
        with self._lock:
            self._consecutive_transient += 1
            return self._consecutive_transient

    def success(self) -> None:
        self._consecutive_transient = 0

    @contextlib.contextmanager
    def shipping(self) -> Iterator[None]:
        """Count a file as in flight while it is shipped (the stop grace period waits for
        those)."""
        with self._lock:
            self.in_flight += 1
        try:
            yield
        finally:
            with self._lock:
                self.in_flight -= 1

    # -- counting (a listener; the bus calls it one event at a time) --------------------------

    def __call__(self, event: Event) -> None:
        c = self._counts
        match event:
            case FileUploaded(size=size):
                c["uploaded"] += 1
                c["bytes_uploaded"] += size
            case FileFailed(path=path, message=message, kind=kind):
                c["failed"] += 1
                c["s3_failed"] += kind in {"retryable", "fatal"}
                self._failures.append(f"{path}: {message}")
            case WouldUpload():
                c["would_upload"] += 1
            case ManifestWritten() | ManifestFailed():
                self._count_manifest(event)
            case FileDeleted(dry_run=dry_run):
                if dry_run:
                    c["would_delete"] += 1
                else:
                    c["deleted"] += 1
            case DeleteFailed():
                c["delete_failed"] += 1
            case SpoolSkipped(failed=True):
                c["spools_failed"] += 1
            case ThrottleReport(throttled=throttled):
                c["throttled"] += throttled
            case _:
                pass

    def _count_manifest(self, event: ManifestWritten | ManifestFailed) -> None:
        if isinstance(event, ManifestWritten):
            self._counts["manifests"] += 1
        else:
            self._counts["manifest_failed"] += 1
            self._failures.append(f"{event.uri}: {event.message}")

    def first_key_failure(self, name: str, st: os.stat_result) -> bool:
        """True the first time in this run that this file (its name, inode, size and mtime)
        cannot get a key. A daemon reports a name it cannot ship once, not every cycle: the
        file stays in ``new/`` as it is, and renaming or rewriting it makes it new. Each
        one-shot run is a new run, so cron reports it every time (exit 1)."""
        identity = (name, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            if identity in self._keyless:
                return False
            self._keyless.add(identity)
            return True

    # -- cycles -------------------------------------------------------------------------------

    def begin_cycle(self) -> None:
        """Start counting a new cycle; a fatal stop of the last one is over, a signal is not."""
        with self._lock:
            self._stop = self._signal_stop
            self._counts = Counter()
            self._failures = []
            self._consecutive_transient = 0
            self._started = time.monotonic()

    def end_cycle(self) -> Summary:
        """The summary of the cycle that just ended."""
        with self._lock:
            return Summary(
                mode=self.mode,
                **self._counts,
                seconds=time.monotonic() - self._started,
                stop=self._stop,
                failures=tuple(self._failures),
            )
