"""Prometheus metrics: a listener on the run's events, a node-exporter textfile, a /metrics server.

Metrics (the names exposed, exactly; see docs/metrics.md):

* counters ``spool_tool_files_uploaded_total``, ``spool_tool_bytes_uploaded_total``,
  ``spool_tool_manifests_written_total``, ``spool_tool_manifest_failures_total``,
  ``spool_tool_upload_failures_total{kind}`` (kind: file, retryable, fatal, changed; all four
  are always exposed), ``spool_tool_files_deleted_total``;
* histogram ``spool_tool_upload_duration_seconds`` (from ``FileUploaded.seconds``; buckets from
  1 ms to 10 min; a resumed upload, where only the move was left, is counted as uploaded but not
  observed: no transfer was timed);
* gauges ``spool_tool_backlog_files{spool_dir}``, ``spool_tool_backlog_bytes{spool_dir}``,
  ``spool_tool_backlog_excluded_files{spool_dir}``,
  ``spool_tool_backlog_oldest_age_seconds{spool_dir}`` (from ``set_backlog`` or a
  ``BacklogMeasured`` event; age 0 when
  ``new/`` is empty; a spool that does not exist has no series),
  ``spool_tool_last_success_timestamp_seconds`` (end of the last run whose summary was ok),
  ``spool_tool_last_run_timestamp_seconds`` (end of the last run),
  ``spool_tool_run_duration_seconds`` (duration of the last run). The timestamps are 0 until
  known.

Counters across cron runs, and how the textfile is written atomically under a lock: see
``spool_tool.observe.metrics_state`` (the persistence of the running totals).

In daemon mode (``serve``) the process lives on; the counters grow with every cycle, and if the
daemon is also given a textfile they start from its saved totals.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from spool_tool.backlog import Backlog
from spool_tool.display import display_name
from spool_tool.errors import ConfigError
from spool_tool.events import (
    Event,
    FileDeleted,
    FileFailed,
    FilesystemMeasured,
    FileUploaded,
    ManifestFailed,
    ManifestWritten,
    RunFinished,
    ThrottleReport,
)
from spool_tool.observe.metrics_state import (
    DURATION_BUCKETS,
    FAILURE_KINDS,
    Totals,
    atomic_write,
    load_state,
    lock_path,
    locked,
    state_path,
)
from spool_tool.throttle import ThrottlingEnded, ThrottlingStarted


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
        self._base = Totals() if textfile is None else load_state(state_path(textfile))
        self._delta = Totals()  # this process's increments not yet saved
        self._backlogs: dict[str, Backlog] = {}
        self._free: dict[str, int] = {}  # spool_dir -> free bytes where its completed/ is
        self._concurrency: int | None = None  # adaptive limit on S3 requests in flight
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
                case (
                    FilesystemMeasured()
                    | ThrottleReport()
                    | ThrottlingStarted()
                    | ThrottlingEnded()
                    | ManifestWritten()
                    | ManifestFailed()
                ):
                    self._fleet_event(event)
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

    def _fleet_event(
        self,
        event: FilesystemMeasured
        | ThrottleReport
        | ThrottlingStarted
        | ThrottlingEnded
        | ManifestWritten
        | ManifestFailed,
    ) -> None:
        """The events of issue 12's features (fleet throttling, disk space, manifests)."""
        match event:
            case ManifestWritten():
                self._delta.manifests_written += 1
            case ManifestFailed():
                self._delta.manifest_failures += 1
            case FilesystemMeasured(spool_dir=spool, free=free):
                self._free[str(spool)] = free
            case ThrottleReport(throttled=throttled, limit=limit):
                self._delta.throttled_requests += throttled
                self._concurrency = limit
            case ThrottlingStarted(limit=limit) | ThrottlingEnded(limit=limit):
                self._concurrency = limit

    def set_backlog(self, backlog: Backlog) -> None:
        """Set one spool's backlog gauges (call it when a run or daemon cycle ends)."""
        with self._mutex:
            if backlog.ok:
                self._backlogs[backlog.spool_dir] = backlog
            else:
                self._backlogs.pop(backlog.spool_dir, None)

    # -- outputs ------------------------------------------------------------------------------

    def write_textfile(self) -> None:
        """Save the running totals to ``PATH.state.json`` and write the textfile ``PATH`` (the
        ``textfile`` given at creation), both atomically. Raises ``OSError`` if either cannot
        be written."""
        target = self.textfile
        if target is None:
            raise ValueError("this listener was created without a textfile")
        with self._mutex, locked(lock_path(target)):
            saved = load_state(state_path(target))
            totals = saved.merged(self._delta)
            atomic_write(state_path(target), totals.to_json().encode("utf-8"))
            self._base, self._delta = totals, Totals()
            # Still under the mutex: the textfile shows exactly the totals just saved (an
            # event arriving now must not reach the textfile before the state file).
            atomic_write(target, generate_latest(self.registry))

    def serve(self, port: int, address: str = "127.0.0.1") -> MetricsServer:
        """Serve ``/metrics`` on ``address:port`` from a daemon thread (port 0: any free port).
        Call ``shutdown()`` on the result to stop it. A port that is taken, or an address
        that is not this host's, is a ConfigError (exit 2), before any file is touched."""
        try:
            server, thread = start_http_server(port, addr=address, registry=self.registry)
        except OSError as exc:  # EADDRINUSE, EADDRNOTAVAIL, an address that does not resolve
            reason = f"cannot listen on {address}:{port}: {exc.strerror or exc}"
            raise ConfigError(reason, option="metrics_port", value=port) from None
        return MetricsServer(server, thread)

    # -- prometheus_client collector ----------------------------------------------------------

    def describe(self) -> list[Metric]:
        return [*self._families(Totals(), {}), *_issue12_families(Totals(), {}, None)]

    def collect(self) -> list[Metric]:
        with self._mutex:
            totals = self._base.merged(self._delta)
            backlogs = dict(self._backlogs)
            free = dict(self._free)
            limit = self._concurrency
        return [*self._families(totals, backlogs), *_issue12_families(totals, free, limit)]

    @staticmethod
    def _families(t: Totals, backlogs: dict[str, Backlog]) -> list[Metric]:
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
        excluded = GaugeMetricFamily(
            "spool_tool_backlog_excluded_files",
            "Regular files in new/ that --include/--exclude leave alone (not in backlog_files).",
            labels=["spool_dir"],
        )
        for name, b in sorted(backlogs.items()):
            label = [display_name(name)]
            excluded.add_metric(label, b.files_excluded)
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
            excluded,
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


def _issue12_families(t: Totals, free: dict[str, int], limit: int | None) -> list[Metric]:
    """Fleet metrics: throttling (a counter) and the adaptive limit; the spool's free space."""
    throttled = CounterMetricFamily(
        "spool_tool_throttled_requests",
        "S3 requests answered with a throttling error (503 SlowDown, 429...).",
    )
    throttled.add_metric([], t.throttled_requests)
    manifests = CounterMetricFamily(
        "spool_tool_manifests_written", "Upload manifests written (--manifest)."
    )
    manifests.add_metric([], t.manifests_written)
    manifest_failures = CounterMetricFamily(
        "spool_tool_manifest_failures",
        "Upload manifests whose PUT failed (their entries are sent again by the next run).",
    )
    manifest_failures.add_metric([], t.manifest_failures)
    families: list[Metric] = [throttled, manifests, manifest_failures, _filesystem_family(free)]
    if limit is not None:
        families.append(
            GaugeMetricFamily(
                "spool_tool_concurrency",
                "Current limit on S3 requests in flight (adaptive: lowered while S3 throttles).",
                value=limit,
            )
        )
    return families


def _filesystem_family(free: dict[str, int]) -> Metric:
    family = GaugeMetricFamily(
        "spool_tool_filesystem_free_bytes",
        "Free bytes (for unprivileged writers) on the filesystem holding completed/, after the "
        "cleanup phase.",
        labels=["spool_dir"],
    )
    for name, value in sorted(free.items()):
        family.add_metric([display_name(name)], value)
    return family


__all__ = [
    "DURATION_BUCKETS",
    "FAILURE_KINDS",
    "MetricsListener",
    "MetricsServer",
    "state_path",
]
