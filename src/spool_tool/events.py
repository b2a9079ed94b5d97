"""What the core reports. Logs, progress and metrics are listeners; the core never prints."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from spool_tool.backlog import Backlog

ErrorKind = Literal["file", "retryable", "fatal", "changed"]


@dataclass(frozen=True, slots=True)
class SpoolStarted:
    spool_dir: Path
    phase: Literal["upload", "cleanup"]


@dataclass(frozen=True, slots=True)
class SpoolSkipped:
    """A spool dir that could not be processed (missing, busy); ``failed`` decides the exit."""

    spool_dir: Path
    reason: str
    failed: bool


@dataclass(frozen=True, slots=True)
class EntrySkipped:
    """An entry in ``new/`` that is not shipped (not a regular file, future mtime...)."""

    path: Path
    reason: str
    warning: bool = False


@dataclass(frozen=True, slots=True)
class FileUploaded:
    path: Path
    uri: str
    size: int
    seconds: float
    resumed: bool = False  # the journal said "uploaded": only the move was left


@dataclass(frozen=True, slots=True)
class FileMoved:
    path: Path
    completed: Path


@dataclass(frozen=True, slots=True)
class FileFailed:
    path: Path
    uri: str | None
    kind: ErrorKind
    message: str


@dataclass(frozen=True, slots=True)
class WouldUpload:
    path: Path
    uri: str


@dataclass(frozen=True, slots=True)
class FileDeleted:
    path: Path
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class DeleteFailed:
    path: Path
    message: str


@dataclass(frozen=True, slots=True)
class RunStopped:
    """The run stopped early (fatal S3 error, signal)."""

    reason: str


@dataclass(frozen=True, slots=True)
class BacklogMeasured:
    """A spool's backlog at the end of a run or daemon cycle (for metrics)."""

    backlog: Backlog


@dataclass(slots=True)
class Summary:
    uploaded: int = 0
    bytes_uploaded: int = 0
    failed: int = 0
    s3_failed: int = 0  # the retryable or fatal ones: S3 (not the file) was the problem
    deleted: int = 0
    delete_failed: int = 0
    spools_failed: int = 0
    seconds: float = 0.0
    stopped: str | None = None
    signal: int | None = None  # set when a signal stopped the run
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.failed or self.delete_failed or self.spools_failed or self.stopped)


@dataclass(frozen=True, slots=True)
class RunFinished:
    summary: Summary


Event = (
    SpoolStarted
    | SpoolSkipped
    | EntrySkipped
    | FileUploaded
    | FileMoved
    | FileFailed
    | WouldUpload
    | FileDeleted
    | DeleteFailed
    | RunStopped
    | RunFinished
    | BacklogMeasured
)
Listener = Callable[[Event], None]


class EventBus:
    """Fans events out to listeners and keeps the run's summary."""

    def __init__(self, listeners: list[Listener] | None = None) -> None:
        self.listeners: list[Listener] = list(listeners or [])
        self.summary = Summary()
        self._lock = threading.RLock()  # events come from the pipeline's worker threads

    def emit(self, event: Event) -> None:
        with self._lock:
            self._count(event)
            for listener in self.listeners:
                listener(event)

    def _count(self, event: Event) -> None:
        s = self.summary
        match event:
            case FileUploaded(size=size):
                s.uploaded += 1
                s.bytes_uploaded += size
            case FileFailed(path=path, message=message, kind=kind):
                s.failed += 1
                s.s3_failed += kind in {"retryable", "fatal"}
                s.failures.append(f"{path}: {message}")
            case FileDeleted(dry_run=False):
                s.deleted += 1
            case DeleteFailed():
                s.delete_failed += 1
            case SpoolSkipped(failed=True):
                s.spools_failed += 1
            case RunStopped(reason=reason):
                s.stopped = reason
            case _:
                pass
