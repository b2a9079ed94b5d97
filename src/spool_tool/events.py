"""What the core reports. Logs, progress and metrics are listeners; the core never prints.

The events are ``NamedTuple`` classes, immutable like the frozen dataclasses they were: a
frozen, slotted dataclass costs ~0.5 ms to create at import (its methods are compiled one by
one), a NamedTuple ~0.07 ms, and these are imported by every run (start-up, issue 10). The
records a run builds from them (``Counts``, ``Summary``) stay dataclasses (inheritance).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NamedTuple

# The gate's own reports (defined in throttle.py, which has no dependencies) are events too.
from spool_tool.throttle import ThrottlingEnded, ThrottlingStarted

if TYPE_CHECKING:
    from spool_tool.backlog import Backlog

ErrorKind = Literal["file", "retryable", "fatal", "changed"]


class SpoolStarted(NamedTuple):
    spool_dir: Path
    phase: Literal["upload", "cleanup"]


class SpoolSkipped(NamedTuple):
    """A spool dir that could not be processed (missing, busy); ``failed`` decides the exit."""

    spool_dir: Path
    reason: str
    failed: bool


class EntrySkipped(NamedTuple):
    """An entry in ``new/`` the scan reports: not shipped (not a regular file; ``warning``
    False) or worth a warning whose ``reason`` says what happens to it (a future mtime: shipped
    with ``--hold-for`` 0, held otherwise; a dry run's file that would fail)."""

    path: Path
    reason: str
    warning: bool = False


class FileUploaded(NamedTuple):
    path: Path
    uri: str
    size: int
    seconds: float
    resumed: bool = False  # the journal said "uploaded": only the move was left


class BytesSent(NamedTuple):
    """Part of a file reached the destination (a multipart part), before the file is done."""

    path: Path
    bytes: int


class FileMoved(NamedTuple):
    path: Path
    completed: Path


class FileFailed(NamedTuple):
    path: Path
    uri: str | None
    kind: ErrorKind
    message: str


class WouldUpload(NamedTuple):
    path: Path
    uri: str


class ManifestWritten(NamedTuple):
    """A spool's upload manifest (``--manifest``) reached S3, listing ``entries`` objects."""

    spool_dir: Path
    uri: str
    entries: int
    bytes: int


class ManifestFailed(NamedTuple):
    """A manifest's PUT failed; its ``entries`` stay in the journal for the next run, which
    sends the same manifest (same key, same entries) again."""

    spool_dir: Path
    uri: str
    entries: int
    kind: ErrorKind
    message: str


class WouldWriteManifest(NamedTuple):
    """A dry run: a manifest of ``entries`` objects would be written (``uri``: an example)."""

    spool_dir: Path
    uri: str
    entries: int


class FileDeleted(NamedTuple):
    path: Path
    dry_run: bool = False


class DeleteFailed(NamedTuple):
    path: Path
    message: str


class ThrottleReport(NamedTuple):
    """A destination's adaptive concurrency at the end of a cycle: throttling answers S3 gave
    since the last report, and the limit on requests in flight now."""

    throttled: int
    limit: int


class FilesystemMeasured(NamedTuple):
    """The filesystem holding a spool's ``completed/``, after the cleanup phase's
    ``--min-free`` pass (``watermark`` 0 without ``--min-free``); ``deleted``: files that
    pass removed to reach the watermark."""

    spool_dir: Path
    free: int
    total: int
    watermark: int = 0
    deleted: int = 0


class DiskPressure(NamedTuple):
    """``completed/`` is empty (of deletable files) and the filesystem is still under the
    ``--min-free`` watermark: ``new/`` (``new_bytes``), not yet uploaded, fills it."""

    spool_dir: Path
    free: int
    total: int
    watermark: int
    new_bytes: int


class FilesFound(NamedTuple):
    """The scan of a spool's ``new/`` found eligible files (one event per scan window).

    ``complete``: the scan of this spool is finished, so its totals are final."""

    spool_dir: Path
    files: int
    bytes: int
    complete: bool


class RunStopped(NamedTuple):
    """The run stops early: no more files are claimed (a fatal S3 error, a signal).

    ``normal``: the expected way to end (a signal to a daemon), not a problem to report."""

    reason: str
    signal: int | None = None
    normal: bool = False


class ExitingNow(NamedTuple):
    """The process leaves at once (a second signal, or the stop grace period ran out):
    listeners must restore the terminal and flush now; the journal makes this safe."""

    reason: str


class DaemonIdle(NamedTuple):
    """The daemon's heartbeat: it is alive and had nothing to do for ``seconds``."""

    spools: int
    seconds: float


class BacklogMeasured(NamedTuple):
    """A spool's backlog at the end of a run or daemon cycle (for metrics)."""

    backlog: Backlog


Mode = Literal["upload", "dry_run"]
"""``dry_run`` changes nothing and reports what it would do; chosen once, for the whole run."""


@dataclass(frozen=True, slots=True)
class Stop:
    """Why a run (or daemon cycle) stopped early: a fatal S3 error, or a signal."""

    reason: str
    signal: int | None = None  # set when a signal asked for the stop


@dataclass(frozen=True, slots=True)
class Counts:
    """The counters of a run or cycle (``RunState`` counts them by these field names)."""

    uploaded: int = 0
    bytes_uploaded: int = 0
    failed: int = 0
    s3_failed: int = 0  # the retryable or fatal ones: S3 (not the file) was the problem
    deleted: int = 0
    delete_failed: int = 0
    spools_failed: int = 0
    would_upload: int = 0
    would_delete: int = 0
    throttled: int = 0  # S3 requests answered with a throttling error (503 SlowDown...)
    manifests: int = 0  # --manifest: manifests written
    manifest_failed: int = 0  # manifests whose PUT failed (their entries wait for the next run)


@dataclass(frozen=True, slots=True)
class Summary(Counts):
    """What one run (or one daemon cycle) did, built by ``RunState`` from the events."""

    mode: Mode = "upload"
    seconds: float = 0.0
    stop: Stop | None = None
    failures: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        failed = self.failed or self.delete_failed or self.spools_failed or self.manifest_failed
        return not (failed or self.stop)

    @property
    def stopped(self) -> str | None:
        return None if self.stop is None else self.stop.reason

    @property
    def signal(self) -> int | None:
        return None if self.stop is None else self.stop.signal

    @property
    def did_something(self) -> bool:
        """Anything to report: a file shipped, failed or deleted, a spool failed, a stop."""
        counts = (self.uploaded, self.failed, self.deleted, self.delete_failed)
        extra = (self.spools_failed, self.would_upload, self.would_delete)
        manifests = (self.manifests, self.manifest_failed)
        return any(counts) or any(extra) or any(manifests) or self.stop is not None


@dataclass(frozen=True, slots=True)
class RunFinished:
    """A run or daemon cycle ended. ``report``: worth a summary line (an idle daemon cycle is
    not; metrics still count it as a run)."""

    summary: Summary
    report: bool = True


Event = (
    SpoolStarted
    | SpoolSkipped
    | EntrySkipped
    | FileUploaded
    | BytesSent
    | FileMoved
    | FileFailed
    | WouldUpload
    | ManifestWritten
    | ManifestFailed
    | WouldWriteManifest
    | FileDeleted
    | DeleteFailed
    | FilesFound
    | FilesystemMeasured
    | ThrottlingStarted
    | ThrottlingEnded
    | ThrottleReport
    | DiskPressure
    | RunStopped
    | ExitingNow
    | DaemonIdle
    | RunFinished
    | BacklogMeasured
)
Listener = Callable[[Event], None]


class EventBus:
    """Fans events out to listeners, one event at a time (events come from worker threads)."""

    def __init__(self, listeners: list[Listener] | None = None) -> None:
        self.listeners: list[Listener] = list(listeners or [])
        self._lock = threading.RLock()

    def emit(self, *events: Event) -> None:
        """Each event to every listener, in order; several at once take the lock once (a
        file's upload and move: one hand-off among the workers, not two)."""
        with self._lock:
            for event in events:
                for listener in self.listeners:
                    listener(event)
