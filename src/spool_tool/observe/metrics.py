"""Prometheus metrics: a listener on the run's events, a node-exporter textfile, a /metrics server.

Metrics (the names exposed, exactly; see docs/metrics.md):

* counters ``spool_tool_files_uploaded_total``, ``spool_tool_bytes_uploaded_total``,
  ``spool_tool_upload_failures_total{kind}`` (kind: file, retryable, fatal, changed; all four
  are always exposed), ``spool_tool_files_deleted_total``;
* histogram ``spool_tool_upload_duration_seconds`` (from ``FileUploaded.seconds``; buckets from
  1 ms to 10 min; a resumed upload, where only the move was left, is counted as uploaded but not
  observed: no transfer was timed);
* gauges ``spool_tool_backlog_files{spool_dir}``, ``spool_tool_backlog_bytes{spool_dir}``,
  ``spool_tool_backlog_oldest_age_seconds{spool_dir}`` (from ``set_backlog`` or a
  ``BacklogMeasured`` event; age 0 when
  ``new/`` is empty; a spool that does not exist has no series),
  ``spool_tool_last_success_timestamp_seconds`` (end of the last run whose summary was ok),
  ``spool_tool_last_run_timestamp_seconds`` (end of the last run),
  ``spool_tool_run_duration_seconds`` (duration of the last run). The timestamps are 0 until
  known.

Counters across cron runs
-------------------------
In cron mode every run is a new process. Without care its counters would be "total since this
process started" and every textfile would look like a counter reset. So a listener created with
``textfile=PATH`` keeps running totals in ``PATH.state.json``: loaded when the listener is
created, merged with this process's increments and saved atomically by every
``write_textfile``. Counters (and the histogram) in the textfile are then monotonic across runs
and ``rate()``/``increase()`` work on them as on any counter. The merge re-reads the state file
under an ``flock`` on ``PATH.state.lock``, so two processes writing the same textfile do not
lose each other's increments (their backlog gauges, which are not persisted, are those of the
last writer: give each cron entry its own textfile). If the state file is unreadable or corrupt
the totals start again from 0 (a warning is logged), which Prometheus treats as a counter
reset. The last success/run timestamps and the last run duration are persisted too, so a failed
run does not erase the time of the last success.

In daemon mode (``serve``) the process lives on; the counters grow with every cycle, and if the
daemon is also given a textfile they start from its saved totals.

``write_textfile`` writes a temporary file in the same directory (a dot-name not ending in
``.prom``, so node-exporter never reads it), fsyncs it, renames it over the target and fsyncs the
directory. ``prometheus_client.write_to_textfile`` (0.26) also does temp + rename but never
fsyncs, so a crash could leave an empty textfile: hence our own.
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self, get_args
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from spool_tool.backlog import Backlog
from spool_tool.events import (
    ErrorKind,
    Event,
    FileDeleted,
    FileFailed,
    FileUploaded,
    RunFinished,
)

log = logging.getLogger(__name__)

FAILURE_KINDS: tuple[str, ...] = get_args(ErrorKind)
# Upper bounds (seconds) of the upload duration buckets: 1 ms .. 10 min, plus +Inf.
DURATION_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
)
STATE_VERSION = 1


def state_path(textfile: Path) -> Path:
    return textfile.with_name(textfile.name + ".state.json")


def _lock_path(textfile: Path) -> Path:
    return textfile.with_name(textfile.name + ".state.lock")


def _safe(text: str) -> str:
    """Paths may hold undecodable bytes (surrogate escapes): the exposition must be UTF-8."""
    return os.fsencode(text).decode("utf-8", "backslashreplace")


@dataclass(slots=True)
class _Totals:
    """Everything that must survive from one cron run to the next."""

    files_uploaded: int = 0
    bytes_uploaded: int = 0
    files_deleted: int = 0
    failures: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FAILURE_KINDS, 0))
    # Per bucket, not cumulative; the last one is +Inf.
    duration_counts: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1))
    duration_sum: float = 0.0
    last_success: float | None = None
    last_run: float | None = None
    run_duration: float | None = None

    def merged(self, other: _Totals) -> _Totals:
        """``self`` (older, e.g. saved) plus ``other`` (newer increments)."""
        newer_run = other.last_run is not None and (
            self.last_run is None or other.last_run >= self.last_run
        )
        successes = [t for t in (self.last_success, other.last_success) if t is not None]
        return _Totals(
            files_uploaded=self.files_uploaded + other.files_uploaded,
            bytes_uploaded=self.bytes_uploaded + other.bytes_uploaded,
            files_deleted=self.files_deleted + other.files_deleted,
            failures={k: self.failures[k] + other.failures[k] for k in FAILURE_KINDS},
            duration_counts=[
                a + b for a, b in zip(self.duration_counts, other.duration_counts, strict=True)
            ],
            duration_sum=self.duration_sum + other.duration_sum,
            last_success=max(successes) if successes else None,
            last_run=other.last_run if newer_run else self.last_run,
            run_duration=other.run_duration if newer_run else self.run_duration,
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": STATE_VERSION,
                "files_uploaded": self.files_uploaded,
                "bytes_uploaded": self.bytes_uploaded,
                "files_deleted": self.files_deleted,
                "upload_failures": self.failures,
                "upload_duration": {
                    "buckets": list(DURATION_BUCKETS),
                    "counts": self.duration_counts,
                    "sum": self.duration_sum,
                },
                "last_success_timestamp": self.last_success,
                "last_run_timestamp": self.last_run,
                "run_duration_seconds": self.run_duration,
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> _Totals:
        """Parse a state file; ``ValueError`` if it is not one we wrote."""
        try:
            data = json.loads(text)
            if data["version"] != STATE_VERSION:
                raise ValueError(f"unknown version {data['version']!r}")
            totals = cls(
                files_uploaded=_count(data["files_uploaded"]),
                bytes_uploaded=_count(data["bytes_uploaded"]),
                files_deleted=_count(data["files_deleted"]),
                failures={k: _count(data["upload_failures"].get(k, 0)) for k in FAILURE_KINDS},
                last_success=_timestamp(data.get("last_success_timestamp")),
                last_run=_timestamp(data.get("last_run_timestamp")),
                run_duration=_timestamp(data.get("run_duration_seconds")),
            )
            duration = data["upload_duration"]
            # Other bucket bounds (another version): the histogram alone starts again.
            if [float(b) for b in duration["buckets"]] == list(DURATION_BUCKETS):
                counts = [_count(c) for c in duration["counts"]]
                if len(counts) != len(DURATION_BUCKETS) + 1:
                    raise ValueError("wrong number of histogram buckets")
                totals.duration_counts = counts
                totals.duration_sum = _timestamp(duration["sum"]) or 0.0
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a spool_tool metrics state file: {exc!r}") from exc
        return totals


def _count(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"not a count: {value!r}")
    return value


def _timestamp(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"not a number: {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"not a valid number: {value!r}")
    return float(value)


def _load_state(path: Path) -> _Totals:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return _Totals()
    except (OSError, UnicodeDecodeError) as exc:
        log.warning("%s: cannot read metrics state, counters start from 0: %s", path, exc)
        return _Totals()
    try:
        return _Totals.from_json(text)
    except ValueError as exc:
        log.warning("%s: corrupt metrics state, counters start from 0: %s", path, exc)
        return _Totals()


def _atomic_write(path: Path, data: bytes) -> None:
    """Temp file in the same directory, fsync, rename over ``path``, fsync the directory."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)  # a leftover of a crashed writer that had our pid
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


class MetricsServer:
    """A running ``/metrics`` HTTP server; ``shutdown()`` stops it and joins its thread."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def port(self) -> int:
        """The bound port (useful when started with port 0)."""
        return int(self._server.server_port)

    @property
    def address(self) -> str:
        return str(self._server.server_address[0])

    def shutdown(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()


class MetricsListener:
    """An event listener that keeps the metrics in its own ``CollectorRegistry``.

    ``textfile``: the node-exporter textfile this listener will write; its running totals are
    loaded from ``textfile.state.json`` now (see the module docstring). ``clock`` gives Unix
    seconds for the run timestamps (tests pass a fake one).
    """

    def __init__(
        self, textfile: Path | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.textfile = textfile
        self._clock = clock
        # Events may come from several threads while the HTTP server collects; re-entrant
        # because write_textfile holds it while the registry calls collect().
        self._mutex = threading.RLock()
        self._base = _Totals() if textfile is None else _load_state(state_path(textfile))
        self._delta = _Totals()  # this process's increments not yet saved
        self._backlogs: dict[str, Backlog] = {}
        self.registry = CollectorRegistry()
        self.registry.register(self)

    # -- listener -----------------------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        with self._mutex:
            d = self._delta
            match event:
                case FileUploaded(size=size, seconds=seconds, resumed=resumed):
                    d.files_uploaded += 1
                    d.bytes_uploaded += size
                    if not resumed:
                        seconds = max(0.0, seconds)
                        d.duration_counts[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
                        d.duration_sum += seconds
                case FileFailed(kind=kind):
                    d.failures[kind] += 1
                case FileDeleted(dry_run=False):
                    d.files_deleted += 1
                case RunFinished(summary=summary):
                    now = self._clock()
                    d.last_run = now
                    d.run_duration = summary.seconds
                    if summary.ok:
                        d.last_success = now
                case _:
                    # ``BacklogMeasured(backlog)``, matched by shape so this module does not
                    # depend on when that event type lands in spool_tool.events.
                    backlog = getattr(event, "backlog", None)
                    if isinstance(backlog, Backlog):
                        self.set_backlog(backlog)

    def set_backlog(self, backlog: Backlog) -> None:
        """Set one spool's backlog gauges (call it when a run or daemon cycle ends)."""
        with self._mutex:
            if backlog.exists:
                self._backlogs[backlog.spool_dir] = backlog
            else:
                self._backlogs.pop(backlog.spool_dir, None)

    # -- outputs ------------------------------------------------------------------------------

    def write_textfile(self, path: Path | None = None) -> None:
        """Save the running totals to ``PATH.state.json`` and write the textfile ``PATH``, both
        atomically. ``path`` defaults to the ``textfile`` given at creation. Raises
        ``OSError`` if either cannot be written."""
        target = path if path is not None else self.textfile
        if target is None:
            raise ValueError("no textfile path given")
        with self._mutex, _locked(_lock_path(target)):
            saved = _load_state(state_path(target))
            totals = saved.merged(self._delta)
            _atomic_write(state_path(target), totals.to_json().encode("utf-8"))
            self._base, self._delta = totals, _Totals()
            # Still under the mutex: the textfile shows exactly the totals just saved (an
            # event arriving now must not reach the textfile before the state file).
            _atomic_write(target, generate_latest(self.registry))

    def serve(self, port: int, address: str = "127.0.0.1") -> MetricsServer:
        """Serve ``/metrics`` on ``address:port`` from a daemon thread (port 0: any free port).
        Call ``shutdown()`` on the result to stop it."""
        server, thread = start_http_server(port, addr=address, registry=self.registry)
        return MetricsServer(server, thread)

    def exposition(self) -> bytes:
        """The metrics in the Prometheus text format."""
        return generate_latest(self.registry)

    # -- prometheus_client collector ----------------------------------------------------------

    def describe(self) -> list[Metric]:
        return self._families(_Totals(), {})

    def collect(self) -> list[Metric]:
        with self._mutex:
            totals = self._base.merged(self._delta)
            backlogs = dict(self._backlogs)
        return self._families(totals, backlogs)

    @staticmethod
    def _families(t: _Totals, backlogs: dict[str, Backlog]) -> list[Metric]:
        uploaded = CounterMetricFamily(
            "spool_tool_files_uploaded", "Files uploaded and moved to completed/."
        )
        uploaded.add_metric([], t.files_uploaded)
        uploaded_bytes = CounterMetricFamily(
            "spool_tool_bytes_uploaded", "Bytes of the files counted in files_uploaded."
        )
        uploaded_bytes.add_metric([], t.bytes_uploaded)
        failures = CounterMetricFamily(
            "spool_tool_upload_failures",
            "Files that failed to upload, by kind (file, retryable, fatal, changed).",
            labels=["kind"],
        )
        for kind in FAILURE_KINDS:
            failures.add_metric([kind], t.failures[kind])
        deleted = CounterMetricFamily(
            "spool_tool_files_deleted", "Files deleted from completed/ by the cleanup phase."
        )
        deleted.add_metric([], t.files_deleted)

        cumulative, running = [], 0
        for bound, count in zip((*DURATION_BUCKETS, math.inf), t.duration_counts, strict=True):
            running += count
            cumulative.append(("+Inf" if math.isinf(bound) else repr(bound), float(running)))
        duration = HistogramMetricFamily(
            "spool_tool_upload_duration_seconds",
            "Time to upload one file (resumed uploads are not observed).",
            buckets=cumulative,
            sum_value=t.duration_sum,
        )

        files = GaugeMetricFamily(
            "spool_tool_backlog_files",
            "Regular files in new/ (eligible or not) when the run or cycle ended.",
            labels=["spool_dir"],
        )
        size = GaugeMetricFamily(
            "spool_tool_backlog_bytes",
            "Bytes of the regular files in new/ when the run or cycle ended.",
            labels=["spool_dir"],
        )
        oldest = GaugeMetricFamily(
            "spool_tool_backlog_oldest_age_seconds",
            "Age of the oldest regular file in new/ when the run or cycle ended (0 if none).",
            labels=["spool_dir"],
        )
        for name, b in sorted(backlogs.items()):
            label = [_safe(name)]
            files.add_metric(label, b.files_waiting)
            size.add_metric(label, b.bytes_waiting)
            oldest.add_metric(label, b.oldest_age_seconds or 0.0)

        def gauge(name: str, doc: str, value: float | None) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, value=0.0 if value is None else value)

        return [
            uploaded,
            uploaded_bytes,
            failures,
            deleted,
            duration,
            files,
            size,
            oldest,
            gauge(
                "spool_tool_last_success_timestamp_seconds",
                "Unix time the last fully successful run ended (0: none yet).",
                t.last_success,
            ),
            gauge(
                "spool_tool_last_run_timestamp_seconds",
                "Unix time the last run ended (0: none yet).",
                t.last_run,
            ),
            gauge(
                "spool_tool_run_duration_seconds",
                "Duration of the last run.",
                t.run_duration,
            ),
        ]


__all__ = [
    "DURATION_BUCKETS",
    "FAILURE_KINDS",
    "MetricsListener",
    "MetricsServer",
    "state_path",
]
