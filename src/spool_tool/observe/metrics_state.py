"""Persistence of the metrics' running totals: the state file beside a textfile, its lock,
and the atomic write both use.

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

``write_textfile`` (``atomic_write``) writes a temporary file in the same directory (a dot-name
not ending in ``.prom``, so node-exporter never reads it), fsyncs it, renames it over the
target and fsyncs the
directory. ``prometheus_client.write_to_textfile`` (0.26) also does temp + rename but never
fsyncs, so a crash could leave an empty textfile: hence our own.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

from spool_tool.events import ErrorKind

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


def lock_path(textfile: Path) -> Path:
    return textfile.with_name(textfile.name + ".state.lock")


@dataclass(slots=True)
class Totals:
    """Everything that must survive from one cron run to the next."""

    files_uploaded: int = 0
    bytes_uploaded: int = 0
    files_deleted: int = 0
    throttled_requests: int = 0
    manifests_written: int = 0
    manifest_failures: int = 0
    failures: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FAILURE_KINDS, 0))
    # Per bucket, not cumulative; the last one is +Inf.
    duration_counts: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1))
    duration_sum: float = 0.0
    last_success: float | None = None
    last_run: float | None = None
    run_duration: float | None = None

    def merged(self, other: Totals) -> Totals:
        """``self`` (older, e.g. saved) plus ``other`` (newer increments)."""
        newer_run = other.last_run is not None and (
            self.last_run is None or other.last_run >= self.last_run
        )
        successes = [t for t in (self.last_success, other.last_success) if t is not None]
        return Totals(
            files_uploaded=self.files_uploaded + other.files_uploaded,
            bytes_uploaded=self.bytes_uploaded + other.bytes_uploaded,
            files_deleted=self.files_deleted + other.files_deleted,
            throttled_requests=self.throttled_requests + other.throttled_requests,
            manifests_written=self.manifests_written + other.manifests_written,
            manifest_failures=self.manifest_failures + other.manifest_failures,
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
                "throttled_requests": self.throttled_requests,
                "manifests_written": self.manifests_written,
                "manifest_failures": self.manifest_failures,
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
    def from_json(cls, text: str) -> Totals:
        """Parse a state file; ``ValueError`` if it is not one we wrote."""
        try:
            data = json.loads(text)
            if data["version"] != STATE_VERSION:
                raise ValueError(f"unknown version {data['version']!r}")
            totals = cls(
                files_uploaded=_count(data["files_uploaded"]),
                bytes_uploaded=_count(data["bytes_uploaded"]),
                files_deleted=_count(data["files_deleted"]),
                throttled_requests=_count(data.get("throttled_requests", 0)),
                manifests_written=_count(data.get("manifests_written", 0)),
                manifest_failures=_count(data.get("manifest_failures", 0)),
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


def load_state(path: Path) -> Totals:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Totals()
    except (OSError, UnicodeDecodeError) as exc:
        log.warning("%s: cannot read metrics state, counters start from 0: %s", path, exc)
        return Totals()
    try:
        return Totals.from_json(text)
    except ValueError as exc:
        log.warning("%s: corrupt metrics state, counters start from 0: %s", path, exc)
        return Totals()


def atomic_write(path: Path, data: bytes) -> None:
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
def locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock
