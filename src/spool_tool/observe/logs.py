"""Log lines for every event, as text or one JSON object per line, on stderr.

Dry-run intentions ("would upload", "would delete") are the command's output and go to stdout.

Every record is one physical line: the message (and, in JSON, every string field) passes
through ``display_name`` once, as it is written, so a file name holding a newline, an escape
sequence or undecodable bytes reads the same in a text line, a JSON value, ``--status`` and the
metrics (``\\n``, ``\\x1b``, ``\\xff``). In JSON these are the characters backslash, ``x``,
``f``, ``f``: the decoded value equals the text log's rendering, never a raw control character
or a lone surrogate.

Lines are queued and written together (one ``write`` for many lines: a write per file costs
about as much as the rest of the line), at the latest ``FLUSH_SECONDS`` after the first queued
one, at once for a warning, an error or the summary (which also write the lines before them, in
order), and by ``flush_all`` at exit, including the ``os._exit`` paths of ``run``.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
import weakref
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from spool_tool.backlog import human_bytes
from spool_tool.display import display_name
from spool_tool.events import (
    DaemonIdle,
    DeleteFailed,
    DiskPressure,
    EntrySkipped,
    Event,
    ExitingNow,
    FileDeleted,
    FileFailed,
    FileMoved,
    FilesFound,
    FilesystemMeasured,
    FileUploaded,
    ManifestFailed,
    ManifestWritten,
    RunFinished,
    RunStopped,
    SpoolSkipped,
    SpoolStarted,
    Summary,
    WouldUpload,
    WouldWriteManifest,
)
from spool_tool.throttle import ThrottlingEnded, ThrottlingStarted


class TextStream(Protocol):
    def write(self, text: str, /) -> int: ...
    def flush(self) -> None: ...


DEBUG, INFO, WARNING, ERROR = logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR
FLUSH_SECONDS = 0.2  # a queued line reaches the stream at the latest this long after
_LEVEL_NAMES = {level: logging.getLevelName(level) for level in (DEBUG, INFO, WARNING, ERROR)}
_WRITERS: weakref.WeakSet[LogWriter] = weakref.WeakSet()


def flush_all() -> None:
    """Write every writer's queued lines: at exit, and before ``os._exit`` (no line is lost)."""
    for writer in list(_WRITERS):
        with contextlib.suppress(OSError, ValueError):
            writer.flush()


atexit.register(flush_all)


class _Flusher:
    """One thread, started once per process, that writes each writer's queued lines
    ``FLUSH_SECONDS`` after the first of them. A ``threading.Timer`` per batch started a thread
    for each batch, and ``Thread.start`` waits until the thread runs: while the writer was called
    with the event bus's lock held, so every finishing worker waited too."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: list[LogWriter] = []
        self._thread: threading.Thread | None = None

    def request(self, writer: LogWriter) -> None:
        with self._cond:
            self._due.append(writer)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="log-flush", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._due))
            time.sleep(FLUSH_SECONDS)
            with self._cond:
                due, self._due = self._due, []
            for writer in dict.fromkeys(due):
                writer.flush_queued()


_FLUSHER = _Flusher()


def level_for(verbose: int, quiet: int) -> int:
    """-v: debug; default: info; -q: warnings and errors; -qq: errors only."""
    return max(DEBUG, min(ERROR, INFO - 10 * verbose + 10 * quiet))


def _failure_line(path: Path, uri: str | None, detail: str) -> str:
    """``failed PATH -> URI: detail`` (the event's detail names neither: see errors.py). Not
    escaped here: ``LogWriter.write`` escapes every line once, as it is written."""
    target = f" -> {uri}" if uri else ""
    return f"failed {path}{target}: {detail}"


def _json_value(value: Any) -> Any:
    """Numbers and booleans as themselves; names and other text through ``display_name``."""
    if isinstance(value, bool | int | float):
        return value
    return display_name(value if isinstance(value, str | os.PathLike) else str(value))


class LogWriter:
    """An event listener and a ``logging.Handler`` target: one line per record."""

    def __init__(
        self,
        *,
        fmt: str = "text",
        level: int = INFO,
        stream: TextStream | None = None,
        out: TextStream | None = None,
        daemon: bool = False,
    ) -> None:
        self.fmt = fmt
        self.level = level
        self.daemon = daemon  # --watch: a stop without a signal ends one cycle, not the process
        self._stream: TextStream = stream if stream is not None else sys.stderr
        self.out: TextStream = out if out is not None else sys.stdout
        self._lock = threading.Lock()
        self._queued: list[str] = []
        self._flush_requested = False  # the flusher will write the queued lines
        self._stamp = (-1, "")  # (whole second, its text): one strftime per second
        _WRITERS.add(self)

    @property
    def stream(self) -> TextStream:
        return self._stream

    @stream.setter
    def stream(self, stream: TextStream) -> None:
        self.flush()  # the lines queued so far belong to the old stream
        self._stream = stream

    def flush(self) -> None:
        """Write the queued lines now."""
        with self._lock:
            self._write_queued()

    def _write_queued(self) -> None:
        self._flush_requested = False
        if not self._queued:
            return
        text, self._queued = "".join(self._queued), []
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):
            # stderr full, gone or closed (2>/dev/full, a reader that exited): a log line that
            # cannot be written must not stop a run or a daemon; the exit status still tells
            pass

    def flush_queued(self) -> None:
        """The flusher's call: never a traceback from its thread."""
        with contextlib.suppress(OSError, ValueError):
            self.flush()

    def _queue(self, line: str, *, at_once: bool) -> None:
        with self._lock:
            self._queued.append(line)
            if at_once:
                self._write_queued()
            elif not self._flush_requested:
                self._flush_requested = True
                _FLUSHER.request(self)

    def _text_stamp(self) -> str:
        now = time.time()
        second = int(now)
        if self._stamp[0] != second:
            text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            self._stamp = (second, text)
        return self._stamp[1]

    def write(self, level: int, event: str, message: str, **fields: Any) -> None:
        if level < self.level:
            return
        if self.fmt == "json":
            record: dict[str, Any] = {
                "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "level": logging.getLevelName(level).lower(),
                "event": event,
                **{k: _json_value(v) for k, v in fields.items() if v is not None},
                "message": display_name(message),
            }
            line = json.dumps(record, ensure_ascii=False)
        else:
            name = _LEVEL_NAMES.get(level) or logging.getLevelName(level)
            line = f"{self._text_stamp()} {name} {display_name(message)}"
        # A warning or an error, and the run's summary, also write the lines before them.
        self._queue(line + "\n", at_once=level >= WARNING or event == "summary")

    def output(self, text: str) -> None:
        """One line of the command's own output (dry-run intentions), escaped like a log."""
        self.out.write(display_name(text) + "\n")

    def __call__(self, event: Event) -> None:
        if _QUIET_BELOW.get(type(event), ERROR) < self.level:
            return  # filtered: do not even format it (hot path: one event per file)
        self._format(event)

    def _format(self, event: Event) -> None:  # noqa: C901, PLR0912 - one arm per event type
        match event:
            case SpoolStarted(spool_dir=spool, phase=phase):
                self.write(
                    DEBUG,
                    "spool_started",
                    f"{phase} phase: {spool}",
                    spool_dir=spool,
                    phase=phase,
                )
            case SpoolSkipped(spool_dir=spool, reason=reason, failed=failed):
                self.write(
                    ERROR if failed else INFO,  # busy: another run is on it, not a problem
                    "spool_skipped",
                    reason,
                    spool_dir=spool,
                )
            case EntrySkipped(path=path, reason=reason, warning=False):
                self.write(DEBUG, "skipped", f"skipped {path}: {reason}", file=path)
            case EntrySkipped(path=path, reason=reason):
                # A warning says itself what happens to the file (a future mtime may ship).
                self.write(WARNING, "entry_warning", f"{path}: {reason}", file=path)
            case FileUploaded(path=path, uri=uri, size=size, seconds=seconds):
                self.write(
                    INFO,
                    "uploaded",
                    f"uploaded {path} -> {uri} ({size} bytes, {seconds:.3f} s)",
                    file=path,
                    uri=uri,
                    bytes=size,
                    seconds=round(seconds, 6),
                )
            case FileMoved(path=path, completed=dst):
                self.write(
                    DEBUG,
                    "moved",
                    f"moved {path} -> {dst}",
                    file=path,
                    completed=dst,
                )
            case FileFailed(path=path, uri=uri, kind=kind, message=message):
                self.write(
                    ERROR,
                    "upload_failed",
                    _failure_line(path, uri, message),
                    file=path,
                    uri=uri,
                    kind=kind,
                )
            case WouldUpload(path=path, uri=uri):
                self.output(f"would upload {path} -> {uri}")
            case ManifestWritten() | ManifestFailed() | WouldWriteManifest():
                self._manifest(event)
            case FileDeleted(path=path, dry_run=True):
                self.output(f"would delete {path}")
            case FileDeleted(path=path):
                self.write(INFO, "deleted", f"deleted {path}", file=path)
            case DeleteFailed(path=path, message=message):
                self.write(ERROR, "delete_failed", message, file=path)
            case RunStopped(reason=reason, signal=signum, normal=normal):
                level = INFO if normal else ERROR if signum is None else WARNING
                how = "ending this cycle" if self.daemon and signum is None else "stopping"
                self.write(level, "run_stopped", f"{how}: {reason}", signal=signum)
            case ExitingNow(reason=reason):
                self.write(WARNING, "exiting", f"exiting now: {reason}")  # written at once
                self.out.flush()
            case DaemonIdle(spools=spools, seconds=seconds):
                self.write(
                    INFO,
                    "heartbeat",
                    f"idle: watching {spools} spool dir(s), nothing to do for {seconds:.0f} s",
                    spools=spools,
                    seconds=round(seconds, 3),
                )
            case FilesystemMeasured(deleted=deleted) if deleted:
                self.write(
                    INFO,
                    "min_free",
                    _min_free_line(event),
                    spool_dir=event.spool_dir,
                    free=event.free,
                    total=event.total,
                    deleted=deleted,
                )
            case DiskPressure(spool_dir=spool, new_bytes=new_bytes):
                self.write(
                    WARNING,
                    "disk_pressure",
                    _pressure_line(event),
                    spool_dir=spool,
                    free=event.free,
                    total=event.total,
                    watermark=event.watermark,
                    new_bytes=new_bytes,
                )
            case ThrottlingStarted(limit=limit):
                self.write(
                    WARNING,
                    "throttling_started",
                    "S3 is throttling requests (503 SlowDown): uploads in flight lowered to "
                    f"{limit}",
                    limit=limit,
                )
            case ThrottlingEnded(seconds=seconds, throttled=throttled, limit=limit):
                self.write(
                    INFO,
                    "throttling_ended",
                    f"S3 throttling ended after {seconds:.1f} s ({throttled} requests "
                    f"throttled); uploads in flight back to {limit}",
                    seconds=round(seconds, 3),
                    throttled=throttled,
                    limit=limit,
                )
            case RunFinished(summary=s, report=True):
                line = summary_line(s, daemon=self.daemon)
                self.write(INFO, "summary", line, **summary_fields(s))

    def _manifest(self, event: ManifestWritten | ManifestFailed | WouldWriteManifest) -> None:
        match event:
            case ManifestWritten(spool_dir=spool, uri=uri, entries=entries, bytes=size):
                self.write(
                    INFO,
                    "manifest_written",
                    f"wrote manifest {uri} ({entries} entries, {size} bytes)",
                    spool_dir=spool,
                    uri=uri,
                    entries=entries,
                    bytes=size,
                )
            case ManifestFailed(spool_dir=spool, uri=uri, entries=entries, kind=kind):
                self.write(
                    ERROR,
                    "manifest_failed",
                    f"failed manifest {uri} ({entries} entries, sent again by the next run): "
                    f"{event.message}",
                    spool_dir=spool,
                    uri=uri,
                    entries=entries,
                    kind=kind,
                )
            case WouldWriteManifest(uri=uri, entries=entries):
                self.output(f"would write manifest {uri} ({entries} entries)")


def _min_free_line(event: FilesystemMeasured) -> str:
    return (
        f"{event.spool_dir}: deleted {event.deleted} oldest completed file(s) for "
        f"--min-free: {human_bytes(event.free)} free of {human_bytes(event.total)}"
    )


def _pressure_line(event: DiskPressure) -> str:
    return (
        f"{event.spool_dir}: new/ alone ({human_bytes(event.new_bytes)}) keeps the "
        f"filesystem under --min-free {human_bytes(event.watermark)} (free "
        f"{human_bytes(event.free)} of {human_bytes(event.total)}); completed/ has nothing "
        "left to delete"
    )


def summary_line(s: Summary, *, daemon: bool = False) -> str:
    """The run's last line: what it did (or would do), and whether and why it stopped. In a
    daemon only a signal stops the process: any other stop ended just this cycle."""
    if s.stop is None:
        how = ""
    elif s.stop.signal is not None:
        how = f"stopped by {signal.Signals(s.stop.signal).name}; "
    elif daemon:
        how = f"cycle ended early: {s.stop.reason}; "
    else:
        how = f"stopped: {s.stop.reason}; "
    if s.mode == "dry_run":
        return (
            f"summary (dry run, nothing changed): {how}would upload {s.would_upload} files, "
            f"would delete {s.would_delete} files, seconds={s.seconds:.3f}"
        )
    throttled = f" throttled={s.throttled}" if s.throttled else ""
    manifests = f" manifests={s.manifests}" if s.manifests or s.manifest_failed else ""
    if s.manifest_failed:
        manifests += f" manifest_failed={s.manifest_failed}"
    return (
        f"summary: {how}uploaded={s.uploaded} failed={s.failed} deleted={s.deleted} "
        f"bytes={s.bytes_uploaded}{throttled}{manifests} seconds={s.seconds:.3f}"
    )


def summary_fields(s: Summary) -> dict[str, Any]:
    fields: dict[str, Any] = {"mode": s.mode}
    if s.mode == "dry_run":
        fields |= {"would_upload": s.would_upload, "would_delete": s.would_delete}
    else:
        fields |= {
            "uploaded": s.uploaded,
            "failed": s.failed,
            "deleted": s.deleted,
            "bytes": s.bytes_uploaded,
        }
        if s.throttled:
            fields["throttled"] = s.throttled
        if s.manifests or s.manifest_failed:
            fields |= {"manifests": s.manifests, "manifest_failed": s.manifest_failed}
    if s.stop is not None:
        fields |= {"stopped": s.stop.reason, "signal": s.stop.signal}
    return fields | {"seconds": round(s.seconds, 6)}


# The highest level each event type can be logged at; below the writer's level it is skipped.
_QUIET_BELOW: dict[type, int] = {
    FilesFound: DEBUG,
    SpoolStarted: DEBUG,
    FileMoved: DEBUG,
    FileUploaded: INFO,
    EntrySkipped: WARNING,
}


class LogHandler(logging.Handler):
    """Routes the library's own ``logging`` records (warnings, debug) through a LogWriter."""

    def __init__(self, writer: LogWriter) -> None:
        super().__init__()
        self.writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        # A warning is logged from inside an upload (retries): a stream that cannot be written
        # (closed, broken pipe) must not turn into that upload's failure.
        with contextlib.suppress(OSError, ValueError):
            self.writer.write(record.levelno, "log", record.getMessage(), logger=record.name)
