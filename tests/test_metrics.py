"""Unit tests for ``spool_tool.observe.metrics``: names, values, textfile, state, HTTP server."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from spool_tool import events
from spool_tool.backlog import Backlog
from spool_tool.config import Config, parse_destination
from spool_tool.events import (
    Event,
    FileDeleted,
    FileFailed,
    FileMoved,
    FileUploaded,
    RunFinished,
    SpoolSkipped,
    Summary,
    WouldUpload,
)
from spool_tool.journal import Claim, Journal
from spool_tool.keys import KeyTemplate
from spool_tool.observe.metrics import MetricsListener, state_path
from spool_tool.run import run
from spool_tool.throttle import ThrottlingStarted
from tests.helpers import run_cli

NOW = 1_700_000_000.0
P = Path("/spool/new/f")

EXPECTED_SAMPLE_NAMES = {
    "spool_tool_files_uploaded_total",
    "spool_tool_bytes_uploaded_total",
    "spool_tool_upload_failures_total",
    "spool_tool_files_deleted_total",
    "spool_tool_throttled_requests_total",
    "spool_tool_manifests_written_total",
    "spool_tool_manifest_failures_total",
    "spool_tool_upload_duration_seconds_bucket",
    "spool_tool_upload_duration_seconds_sum",
    "spool_tool_upload_duration_seconds_count",
    "spool_tool_backlog_files",
    "spool_tool_backlog_bytes",
    "spool_tool_backlog_oldest_age_seconds",
    "spool_tool_backlog_excluded_files",
    "spool_tool_last_success_timestamp_seconds",
    "spool_tool_last_run_timestamp_seconds",
    "spool_tool_run_duration_seconds",
}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str | bytes) -> Samples:
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found[name, frozenset(labels.items())]


def feed(listener: MetricsListener, events: Iterable[Event]) -> None:
    for event in events:
        listener(event)


def a_run(ok: bool = True, seconds: float = 12.5) -> list[Event]:
    return [
        FileUploaded(P, "s3://b/k1", 100, 0.002),
        FileMoved(P, Path("/spool/completed/f")),
        FileUploaded(P, "s3://b/k2", 200, 3.0),
        FileUploaded(P, "s3://b/k3", 50, 0.0, resumed=True),
        FileFailed(P, "s3://b/k4", "retryable", "timeout"),
        FileFailed(P, None, "changed", "changed while uploading"),
        FileFailed(P, None, "changed", "changed again"),
        FileDeleted(Path("/spool/completed/old")),
        FileDeleted(Path("/spool/completed/dry"), dry_run=True),  # not counted
        WouldUpload(P, "s3://b/k5"),
        SpoolSkipped(Path("/other"), "busy", False),
        RunFinished(Summary(uploaded=3, failed=0 if ok else 3, seconds=seconds)),
    ]


def clock(t: float = NOW) -> float:
    return t


def test_exposed_names_are_exact_and_there_is_no_created_series() -> None:
    listener = MetricsListener(clock=clock)
    listener.set_backlog(Backlog("/spool", files_waiting=1))
    text = generate_latest(listener.registry).decode()
    names = {name for name, _ in samples(text)}
    assert names == EXPECTED_SAMPLE_NAMES
    assert "_total_total" not in text
    assert "_created" not in text
    assert "# TYPE spool_tool_files_uploaded_total counter" in text
    assert "# TYPE spool_tool_upload_duration_seconds histogram" in text
    assert "# TYPE spool_tool_backlog_files gauge" in text


def test_fresh_listener_exposes_zeroes() -> None:
    found = samples(generate_latest(MetricsListener(clock=clock).registry))
    assert value(found, "spool_tool_files_uploaded_total") == 0
    for kind in ("file", "retryable", "fatal", "changed"):  # every kind exists from the start
        assert value(found, "spool_tool_upload_failures_total", kind=kind) == 0
    assert value(found, "spool_tool_last_success_timestamp_seconds") == 0
    assert value(found, "spool_tool_upload_duration_seconds_count") == 0
    assert not any(name.startswith("spool_tool_backlog") for name, _ in found)


def test_events_counted() -> None:
    listener = MetricsListener(clock=clock)
    feed(listener, a_run())
    found = samples(generate_latest(listener.registry))

    assert value(found, "spool_tool_files_uploaded_total") == 3
    assert value(found, "spool_tool_bytes_uploaded_total") == 350
    assert value(found, "spool_tool_upload_failures_total", kind="file") == 0
    assert value(found, "spool_tool_upload_failures_total", kind="retryable") == 1
    assert value(found, "spool_tool_upload_failures_total", kind="fatal") == 0
    assert value(found, "spool_tool_upload_failures_total", kind="changed") == 2
    assert value(found, "spool_tool_files_deleted_total") == 1
    assert value(found, "spool_tool_last_success_timestamp_seconds") == NOW
    assert value(found, "spool_tool_last_run_timestamp_seconds") == NOW
    assert value(found, "spool_tool_run_duration_seconds") == 12.5

    # The resumed upload (no transfer timed) is not observed.
    h = "spool_tool_upload_duration_seconds"
    assert value(found, f"{h}_count") == 2
    assert value(found, f"{h}_sum") == pytest.approx(3.002)
    assert value(found, f"{h}_bucket", le="0.001") == 0
    assert value(found, f"{h}_bucket", le="0.0025") == 1
    assert value(found, f"{h}_bucket", le="2.5") == 1
    assert value(found, f"{h}_bucket", le="5.0") == 2
    assert value(found, f"{h}_bucket", le="600.0") == 2
    assert value(found, f"{h}_bucket", le="+Inf") == 2


def test_bucket_bounds_cover_1ms_to_10min() -> None:
    listener = MetricsListener(clock=clock)
    feed(listener, [FileUploaded(P, "u", 1, s) for s in (0.001, 600.0, 601.0, -1.0)])
    found = samples(generate_latest(listener.registry))
    h = "spool_tool_upload_duration_seconds_bucket"
    assert value(found, h, le="0.001") == 2  # a bound is inclusive; a negative time counts as 0
    assert value(found, h, le="600.0") == 3
    assert value(found, h, le="+Inf") == 4


def test_failed_run_keeps_the_last_success() -> None:
    times = iter([NOW, NOW + 60])
    listener = MetricsListener(clock=lambda: next(times))
    listener(RunFinished(Summary(seconds=1.0)))
    listener(RunFinished(Summary(failed=1, seconds=2.0)))
    found = samples(generate_latest(listener.registry))
    assert value(found, "spool_tool_last_success_timestamp_seconds") == NOW
    assert value(found, "spool_tool_last_run_timestamp_seconds") == NOW + 60
    assert value(found, "spool_tool_run_duration_seconds") == 2.0


def test_backlog_gauges() -> None:
    listener = MetricsListener(clock=clock)
    listener.set_backlog(
        Backlog(
            "/spool/a",
            files_waiting=5,
            bytes_waiting=500,
            oldest_age_seconds=901.5,
            files_excluded=2,
        )
    )
    listener.set_backlog(Backlog("/spool/b"))  # empty: age 0
    listener.set_backlog(Backlog(os.fsdecode(b"/spool/\xff")))
    found = samples(generate_latest(listener.registry))
    assert value(found, "spool_tool_backlog_files", spool_dir="/spool/a") == 5
    assert value(found, "spool_tool_backlog_bytes", spool_dir="/spool/a") == 500
    assert value(found, "spool_tool_backlog_excluded_files", spool_dir="/spool/a") == 2
    assert value(found, "spool_tool_backlog_oldest_age_seconds", spool_dir="/spool/a") == 901.5
    assert value(found, "spool_tool_backlog_files", spool_dir="/spool/b") == 0
    assert value(found, "spool_tool_backlog_oldest_age_seconds", spool_dir="/spool/b") == 0
    assert value(found, "spool_tool_backlog_files", spool_dir="/spool/\\xff") == 0

    # A newer measurement replaces the old one; a spool that is gone loses its series.
    listener.set_backlog(Backlog("/spool/a", files_waiting=1, bytes_waiting=10))
    listener.set_backlog(Backlog("/spool/b", exists=False))
    found = samples(generate_latest(listener.registry))
    assert value(found, "spool_tool_backlog_files", spool_dir="/spool/a") == 1
    assert ("spool_tool_backlog_files", frozenset({("spool_dir", "/spool/b")})) not in found


def test_backlog_measured_event() -> None:
    backlog_measured = getattr(events, "BacklogMeasured", None)
    if backlog_measured is None:
        pytest.skip("spool_tool.events has no BacklogMeasured yet")
    listener = MetricsListener(clock=clock)
    listener(backlog_measured(Backlog("/spool/a", files_waiting=4, bytes_waiting=8)))
    found = samples(generate_latest(listener.registry))
    assert value(found, "spool_tool_backlog_files", spool_dir="/spool/a") == 4
    assert value(found, "spool_tool_backlog_bytes", spool_dir="/spool/a") == 8


# --------------------------------------------------------------------------- textfile


def test_textfile_is_parseable_and_leaves_no_temporary(tmp_path: Path) -> None:
    prom = tmp_path / "spool_tool.prom"
    listener = MetricsListener(prom, clock=clock)
    feed(listener, a_run())
    listener.set_backlog(Backlog("/spool/a", files_waiting=2, bytes_waiting=20))
    listener.write_textfile()

    found = samples(prom.read_text(encoding="utf-8"))
    assert {name for name, _ in found} == EXPECTED_SAMPLE_NAMES
    assert value(found, "spool_tool_files_uploaded_total") == 3
    assert value(found, "spool_tool_backlog_files", spool_dir="/spool/a") == 2
    assert sorted(os.listdir(tmp_path)) == [
        "spool_tool.prom",
        "spool_tool.prom.state.json",
        "spool_tool.prom.state.lock",
    ]
    assert json.loads(state_path(prom).read_text())["files_uploaded"] == 3


@pytest.mark.parametrize("failing", [".m.prom.", ".m.prom.state.json."])
def test_textfile_replaced_atomically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    """A write that fails (disk full) at the textfile or at the state file leaves the old
    textfile whole, no temporary file, and loses no increment."""
    prom = tmp_path / "m.prom"
    listener = MetricsListener(prom, clock=clock)
    listener.write_textfile()
    first = prom.read_bytes()
    inode = prom.stat().st_ino

    feed(listener, a_run())
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        target = os.readlink(f"/proc/self/fd/{fd}")
        if os.path.basename(target).startswith(failing) and target.endswith(".tmp"):
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError, match="No space"):
        listener.write_textfile()
    monkeypatch.undo()
    assert prom.read_bytes() == first  # the old textfile is untouched, never half-written
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]

    listener.write_textfile()
    assert prom.stat().st_ino != inode  # replaced by rename, not rewritten in place
    assert value(samples(prom.read_text()), "spool_tool_files_uploaded_total") == 3


def test_write_textfile_needs_a_textfile(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="without a textfile"):
        MetricsListener(clock=clock).write_textfile()
    listener = MetricsListener(tmp_path / "other.prom", clock=clock)
    listener(FileUploaded(P, "u", 7, 0.1))
    listener.write_textfile()
    found = samples((tmp_path / "other.prom").read_text())
    assert value(found, "spool_tool_bytes_uploaded_total") == 7
    assert (tmp_path / "other.prom.state.json").exists()


def test_counters_accumulate_across_cron_runs(tmp_path: Path) -> None:
    prom = tmp_path / "spool_tool.prom"

    first = MetricsListener(prom, clock=lambda: NOW)
    feed(first, a_run(ok=True, seconds=10))
    first.write_textfile()

    second = MetricsListener(prom, clock=lambda: NOW + 300)  # the next cron run
    # Its totals start from the saved ones, also on /metrics and before any event.
    assert value(samples(generate_latest(second.registry)), "spool_tool_files_uploaded_total") == 3
    feed(second, a_run(ok=False, seconds=20))
    second.write_textfile()

    found = samples(prom.read_text())
    assert value(found, "spool_tool_files_uploaded_total") == 6
    assert value(found, "spool_tool_bytes_uploaded_total") == 700
    assert value(found, "spool_tool_upload_failures_total", kind="changed") == 4
    assert value(found, "spool_tool_files_deleted_total") == 2
    assert value(found, "spool_tool_upload_duration_seconds_count") == 4
    assert value(found, "spool_tool_upload_duration_seconds_bucket", le="0.0025") == 2
    # The failed second run did not erase the first run's success.
    assert value(found, "spool_tool_last_success_timestamp_seconds") == NOW
    assert value(found, "spool_tool_last_run_timestamp_seconds") == NOW + 300
    assert value(found, "spool_tool_run_duration_seconds") == 20


def test_writing_twice_does_not_double_count(tmp_path: Path) -> None:
    prom = tmp_path / "m.prom"
    listener = MetricsListener(prom, clock=clock)
    listener(FileUploaded(P, "u", 10, 0.1))
    listener.write_textfile()
    listener.write_textfile()  # e.g. once per daemon cycle
    listener(FileUploaded(P, "u", 10, 0.1))
    listener.write_textfile()
    found = samples(prom.read_text())
    assert value(found, "spool_tool_files_uploaded_total") == 2
    assert value(found, "spool_tool_bytes_uploaded_total") == 20
    exposed = samples(generate_latest(listener.registry))
    assert value(exposed, "spool_tool_files_uploaded_total") == 2


def test_concurrent_writers_lose_no_increment(tmp_path: Path) -> None:
    """Two processes started before either saved: the merge re-reads the state file."""
    prom = tmp_path / "m.prom"
    a = MetricsListener(prom, clock=clock)
    b = MetricsListener(prom, clock=clock)
    a(FileUploaded(P, "u", 1, 0.1))
    b(FileUploaded(P, "u", 2, 0.1))
    b(FileUploaded(P, "u", 4, 0.1))
    a.write_textfile()
    b.write_textfile()
    found = samples(prom.read_text())
    assert value(found, "spool_tool_files_uploaded_total") == 3
    assert value(found, "spool_tool_bytes_uploaded_total") == 7


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[]",
        '{"version": 99}',
        '{"version": 1, "files_uploaded": -5}',
        '{"version": 1, "files_uploaded": "3", "bytes_uploaded": 0}',
    ],
)
def test_corrupt_state_starts_from_zero(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: str
) -> None:
    prom = tmp_path / "m.prom"
    state_path(prom).write_text(content)
    with caplog.at_level(logging.WARNING, logger="spool_tool.observe.metrics"):
        listener = MetricsListener(prom, clock=clock)
    assert "corrupt metrics state" in caplog.text
    listener(FileUploaded(P, "u", 1, 0.1))
    listener.write_textfile()
    assert value(samples(prom.read_text()), "spool_tool_files_uploaded_total") == 1
    assert json.loads(state_path(prom).read_text())["files_uploaded"] == 1


def test_state_with_other_buckets_resets_the_histogram_only(tmp_path: Path) -> None:
    prom = tmp_path / "m.prom"
    listener = MetricsListener(prom, clock=clock)
    feed(listener, a_run())
    listener.write_textfile()
    state = json.loads(state_path(prom).read_text())
    state["upload_duration"]["buckets"] = [1.0, 2.0]
    state_path(prom).write_text(json.dumps(state))

    found = samples(generate_latest(MetricsListener(prom, clock=clock).registry))
    assert value(found, "spool_tool_files_uploaded_total") == 3
    assert value(found, "spool_tool_upload_duration_seconds_count") == 0


# --------------------------------------------------------------------------- HTTP


def test_http_server_serves_metrics_and_shuts_down() -> None:
    threads_before = set(threading.enumerate())
    listener = MetricsListener(clock=clock)
    feed(listener, a_run())
    listener.set_backlog(Backlog("/spool/a", files_waiting=9))
    server = listener.serve(0)  # a free port chosen by the kernel
    try:
        assert server.address == "127.0.0.1"
        url = f"http://127.0.0.1:{server.port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
            body = response.read().decode()
        found = samples(body)
        assert {name for name, _ in found} == EXPECTED_SAMPLE_NAMES
        assert value(found, "spool_tool_files_uploaded_total") == 3
        assert value(found, "spool_tool_backlog_files", spool_dir="/spool/a") == 9

        listener(FileUploaded(P, "u", 1, 0.1))  # live: the next scrape sees it
        with urllib.request.urlopen(url, timeout=10) as response:
            found = samples(response.read().decode())
        assert value(found, "spool_tool_files_uploaded_total") == 4
    finally:
        server.shutdown()

    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=2)
    leftover = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]
    for t in leftover:  # request threads are daemons that finish right after answering
        t.join(timeout=5)
    assert not [t for t in leftover if t.is_alive()]
    server.shutdown()  # idempotent


def test_http_server_context_manager() -> None:
    listener = MetricsListener(clock=clock)
    with listener.serve(0, address="127.0.0.1") as server:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as r:
            assert b"spool_tool_files_uploaded_total 0.0" in r.read()
        port = server.port
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_resumed_upload_is_flagged_counted_and_not_observed(tmp_path: Path) -> None:
    """Issue 8.4: ``FileUploaded.resumed`` is set when the journal says a killed run finished
    the upload (only the move was left): counted as uploaded, kept out of the histogram, as
    docs/metrics.md says. Before, nothing set it and a 0 s "upload" was observed."""
    spool = tmp_path / "spool"
    (spool / "new").mkdir(parents=True)
    done = spool / "new" / "done.dat"
    done.write_bytes(b"uploaded by the killed run")
    st = done.stat()
    with Journal.open(spool) as journal:
        journal.add_claims([Claim("done.dat", st.st_dev, st.st_ino, "done.dat")])
        journal.mark_uploaded("done.dat", st.st_size, st.st_mtime_ns, '"etag"', None)
    seen: list[Event] = []
    listener = MetricsListener(clock=clock)
    config = Config(
        spool_dirs=(spool,),
        destination=parse_destination("noop"),
        template=KeyTemplate.parse("{fname}"),
    )
    summary = run(config, [seen.append, listener])
    assert summary.ok
    (uploaded,) = [e for e in seen if isinstance(e, FileUploaded)]
    assert uploaded.resumed
    found = samples(generate_latest(listener.registry))
    assert value(found, "spool_tool_files_uploaded_total") == 1
    assert value(found, "spool_tool_upload_duration_seconds_count") == 0


def test_filesystem_free_gauge_per_spool_dir() -> None:
    listener = MetricsListener(clock=clock)
    listener(events.FilesystemMeasured(Path("/spool/a"), 1000, 4000, 500, 2))
    listener(events.FilesystemMeasured(Path("/spool/b"), 7, 4000))
    listener(events.FilesystemMeasured(Path("/spool/a"), 1500, 4000, 500))  # the latest wins
    found = samples(generate_latest(listener.registry))
    assert value(found, "spool_tool_filesystem_free_bytes", spool_dir="/spool/a") == 1500
    assert value(found, "spool_tool_filesystem_free_bytes", spool_dir="/spool/b") == 7
    assert (
        "# TYPE spool_tool_filesystem_free_bytes gauge"
        in generate_latest(listener.registry).decode()
    )


def test_throttled_counter_is_kept_across_cron_runs_and_concurrency_gauge(tmp_path: Path) -> None:
    prom = tmp_path / "spool_tool.prom"
    first = MetricsListener(prom, clock=clock)
    first(ThrottlingStarted(limit=11))
    first(events.ThrottleReport(throttled=7, limit=16))
    first(RunFinished(Summary(throttled=7)))
    first.write_textfile()
    assert json.loads(state_path(prom).read_text())["throttled_requests"] == 7
    second = MetricsListener(prom, clock=clock)  # the next cron run
    second(events.ThrottleReport(throttled=2, limit=5))
    second.write_textfile()
    found = samples(prom.read_text())
    assert value(found, "spool_tool_throttled_requests_total") == 9
    assert value(found, "spool_tool_concurrency") == 5


def test_manifest_counters_are_kept_across_cron_runs(tmp_path: Path) -> None:
    prom = tmp_path / "spool_tool.prom"
    first = MetricsListener(prom, clock=clock)
    first(events.ManifestWritten(Path("/s"), "s3://b/m1", entries=3, bytes=900))
    first(events.ManifestFailed(Path("/s"), "s3://b/m2", 2, "retryable", "HTTP 500"))
    first.write_textfile()
    second = MetricsListener(prom, clock=clock)  # the next cron run
    second(events.ManifestWritten(Path("/s"), "s3://b/m2", entries=2, bytes=600))
    second.write_textfile()
    found = samples(prom.read_text())
    assert value(found, "spool_tool_manifests_written_total") == 2
    assert value(found, "spool_tool_manifest_failures_total") == 1


@pytest.mark.parametrize("address", ["127.0.0.1", "nonexistent.invalid"])
def test_metrics_port_that_cannot_be_served_is_a_usage_error(spool_dir: Path, address: str) -> None:
    """Issue 9 audit: a taken --metrics-port (or an address that is not this host's) ended the
    daemon's start in an OSError traceback. Now one usage line, exit 2, nothing touched."""
    (spool_dir / "new" / "a.txt").write_bytes(b"a")
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = run_cli(
            "--watch",
            "--metrics-port",
            str(port),
            "--metrics-address",
            address,
            spool_dir,
            "noop",
            timeout=60,
        )

    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"spool_tool: error: invalid --metrics-port {port}: cannot listen on")
    assert (spool_dir / "new" / "a.txt").exists()
