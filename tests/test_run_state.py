"""Stopping and reporting a run (issue 9 items 9, 12-17): signals within a grace period, a
terminal left clean, quiet cron and daemon logs, summaries that tell the truth, progress with
totals. Terminal cases run under a pseudo-terminal."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal, cast

import pytest

from spool_tool.config import Config, parse_destination
from spool_tool.events import (
    BytesSent,
    DaemonIdle,
    Event,
    EventBus,
    FilesFound,
    FileUploaded,
    Summary,
)
from spool_tool.journal import Journal
from spool_tool.keys import KeyTemplate
from spool_tool.observe.progress import SHOW_CURSOR, ProgressDisplay
from spool_tool.run import run
from spool_tool.watch import HEARTBEAT_SECONDS, _heartbeat
from tests.faults.endpoints import SickEndpoint
from tests.helpers import SPOOL_TOOL, Daemon, make_files, run_cli

if TYPE_CHECKING:
    from devtools.seaweed import SeaweedServer
    from spool_tool.run import Runner

HIDE_CURSOR = b"\x1b[?25l"


def _wait_for(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError(f"condition not met within {timeout} s")


# -- 9.9: SIGTERM against an endpoint that never answers ---------------------------------------


def _black_hole_env(hole: SickEndpoint) -> dict[str, str]:
    return {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "y",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": hole.url,
    }


def _sigterm_once_reached(
    behaviour: Literal["silent", "hang-put"], argv: list[str]
) -> tuple[int, str, float]:
    """Run ``argv`` against a sick endpoint, SIGTERM it once the endpoint was reached; return
    (exit status, stderr, seconds from the signal to the exit)."""
    with SickEndpoint(behaviour) as hole:
        proc = subprocess.Popen(
            argv,
            env=_black_hole_env(hole),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert hole.reached.wait(30), "the run never reached the endpoint"
            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=30)
            return proc.returncode, stderr, time.monotonic() - sent
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


def test_sigterm_ends_a_run_stuck_on_a_silent_endpoint_within_the_grace_period(
    spool_dir: Path,
) -> None:
    make_files(spool_dir / "new", 3)
    status, stderr, took = _sigterm_once_reached(
        "silent", [*SPOOL_TOOL, str(spool_dir), "s3://bucket/p/"]
    )
    assert status == 128 + signal.SIGTERM, stderr
    assert took < 10, took  # nothing was in flight: the 2 s idle grace, not the 30 s one
    assert "Traceback" not in stderr
    assert "received SIGTERM" in stderr
    assert "exiting now: no upload in flight, but S3 has not answered" in stderr
    assert sorted(p.name for p in (spool_dir / "new").iterdir()) == [
        "f00000.dat",
        "f00001.dat",
        "f00002.dat",
    ]


def test_sigterm_abandons_uploads_in_flight_when_the_grace_period_ends(spool_dir: Path) -> None:
    """The uploads in flight get the grace period (1.5 s here, 30 s by default), then the
    process leaves with one line; the files stay in new/ with their keys journaled."""
    make_files(spool_dir / "new", 2)
    code = (
        "import sys, spool_tool.run as r; r.STOP_GRACE_SECONDS = 1.5; "
        "from spool_tool.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    argv = [SPOOL_TOOL[0], "-c", code, "--addressing-style", "path", str(spool_dir), "s3://bucket/"]
    status, stderr, took = _sigterm_once_reached("hang-put", argv)
    assert status == 128 + signal.SIGTERM, stderr
    assert 1.4 <= took < 10, took
    assert "Traceback" not in stderr
    assert "exiting now: the uploads in flight did not finish within 1.5 s" in stderr
    assert len(list((spool_dir / "new").iterdir())) == 2
    journal = Journal.read_only(spool_dir)
    assert journal is not None
    with journal:
        assert len(journal.claims) == 2  # the next run uploads them to the same keys


# -- 9.12, 9.13, 9.17: the progress line -------------------------------------------------------


def _on_pty(*args: str, term: str = "xterm") -> tuple[subprocess.Popen[bytes], int]:
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [*SPOOL_TOOL, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=secondary,
        env={**os.environ, "TERM": term},
    )
    os.close(secondary)
    return proc, primary


def _read_until_eof(primary: int, output: bytearray, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([primary], [], [], 1)
        if not ready:
            continue
        try:
            chunk = os.read(primary, 65536)
        except OSError:
            return
        if not chunk:
            return
        output += chunk


def test_progress_line_on_a_terminal_redraws_at_a_bounded_rate(spool_dir: Path) -> None:
    """9.12: the line is redrawn a few times a second, not once per file; log lines are plain
    text written above it (no per-file rendering)."""
    make_files(spool_dir / "new", 3000, size=10)
    proc, primary = _on_pty(str(spool_dir), "noop")
    output = bytearray()
    _read_until_eof(primary, output)
    os.close(primary)
    assert proc.wait(timeout=30) == 0
    text = output.decode()
    assert text.count("uploaded ") >= 3000
    redraws = text.count("files ")  # one per redraw of the status line
    assert redraws < 300, redraws  # 3,000 files: far fewer redraws than files
    assert text.rstrip("\r\n").endswith(SHOW_CURSOR)  # the line erased, the cursor back


@pytest.mark.parametrize("term", ["dumb", ""])
def test_no_status_line_on_a_dumb_terminal(spool_dir: Path, term: str) -> None:
    """TERM=dumb (Emacs' shell, CI consoles) or no TERM: a terminal that cannot move its
    cursor got the status line's erase and cursor codes as garbage. Now plain log lines."""
    make_files(spool_dir / "new", 300, size=10)
    proc, primary = _on_pty(str(spool_dir), "noop", term=term)
    output = bytearray()
    _read_until_eof(primary, output)
    os.close(primary)
    assert proc.wait(timeout=30) == 0
    assert output.count(b"uploaded ") == 300
    assert b"\x1b" not in output, bytes(output[-300:])


def test_two_ctrl_c_leave_the_terminal_restored(spool_dir: Path) -> None:
    """9.13: SIGINT twice while the progress line is live: the cursor is shown again and the
    line erased before the process exits."""
    make_files(spool_dir / "new", 5000, size=10)
    proc, primary = _on_pty(str(spool_dir), "noop")
    output = bytearray()
    deadline = time.monotonic() + 60
    while HIDE_CURSOR not in output and time.monotonic() < deadline:
        ready, _, _ = select.select([primary], [], [], 1)
        if ready:
            output += os.read(primary, 65536)
    assert HIDE_CURSOR in output, "the progress line never appeared"
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _read_until_eof(primary, output)
    os.close(primary)
    code = proc.wait(timeout=30)
    text = output.decode(errors="replace")
    # 130, or killed by the signal if it lands during interpreter shutdown, after the run
    # ended (both are status 130 to a shell); either way the terminal must be restored.
    assert code in {128 + signal.SIGINT, -signal.SIGINT}, text[-2000:]
    assert "Traceback" not in text
    last_hide = text.rindex(HIDE_CURSOR.decode())
    assert SHOW_CURSOR in text[last_hide:], text[-500:]
    assert text.rstrip("\r\n").endswith(SHOW_CURSOR), text[-500:]


class _Terminal:
    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        return None

    def fileno(self) -> int:
        raise OSError("not a real terminal")


def test_progress_shows_totals_percentage_eta_and_bytes_in_flight() -> None:
    """9.17: totals from the scan, multipart parts counted while the file is in flight."""
    now = [100.0]
    display = ProgressDisplay(cast("IO[str]", _Terminal()), clock=lambda: now[0])
    spool = Path("/spool")
    display(FilesFound(spool, 4, 4_000_000, complete=False))
    assert "%" not in display.line()  # the scan is still going: no percentage yet
    display(FilesFound(spool, 0, 0, complete=True))
    display(FileUploaded(spool / "new" / "a", "s3://b/a", 1_000_000, 0.1))
    now[0] += 1
    display(BytesSent(spool / "new" / "big", 1_000_000))  # a part of a file in flight
    line = display.line()
    assert line.startswith("2.0 MB / 4.0 MB, 50%, ")
    assert "ETA 1s" in line
    assert "files 1 / 4" in line
    display.stop()


# -- 9.14: a spool held by another run ---------------------------------------------------------


def test_busy_spool_notice_once_at_info_and_silent_under_q(spool_dir: Path) -> None:
    make_files(spool_dir / "new", 1)
    (spool_dir / "completed").mkdir()
    with Journal.open(spool_dir):  # another run holds the spool
        loud = run_cli(spool_dir, "noop")
        quiet = run_cli("-q", spool_dir, "noop")
    assert loud.returncode == 0, loud.stderr
    notices = [line for line in loud.stderr.splitlines() if "held by another" in line]
    assert len(notices) == 1, loud.stderr
    assert " INFO " in notices[0]
    assert quiet.returncode == 0
    assert quiet.stderr == ""


# -- 9.15: the daemon's logs ---------------------------------------------------------------


def test_daemon_logs_start_up_busy_cycles_only_and_a_normal_stop_at_info(
    spool_dir: Path,
) -> None:
    daemon = Daemon(
        "--interval", "0.2", "--log-format", "json", str(spool_dir), "noop",
        env=dict(os.environ),
    )  # fmt: skip
    try:
        _wait_for(lambda: daemon.matching("daemon_started"), 30)
        time.sleep(2)  # about ten idle cycles
        assert daemon.matching('"summary"') == []
        (spool_dir / "new" / "one.txt").write_text("x")
        _wait_for(lambda: daemon.matching('"summary"'), 10)
        code = daemon.stop(signal.SIGTERM)
    finally:
        daemon.close()
    assert code == 0
    events = [json.loads(line) for line in daemon.lines]
    (started,) = [e for e in events if e["event"] == "daemon_started"]
    assert str(spool_dir) in started["message"]
    assert "noop://" in started["message"]
    assert started["level"] == "info"
    summaries = [e for e in events if e["event"] == "summary"]
    assert [s["uploaded"] for s in summaries] == [1]
    (stop,) = [e for e in events if e["event"] == "run_stopped"]
    assert stop["level"] == "info"
    assert not [e for e in events if e["level"] == "error"]


def test_daemon_reports_a_file_it_cannot_name_once_not_every_cycle(spool_dir: Path) -> None:
    """Issue 9 audit: a name that cannot become a key (a newline, an undecodable byte) was
    reported again every --interval (8,640 ERROR lines and summaries a day at 30 s). Now once
    while it stays as it is; rewriting it reports it again; the others ship meanwhile."""
    bad = spool_dir / "new" / "bad\nname.txt"
    bad.write_text("x")
    daemon = Daemon(
        "--interval", "0.2", "--log-format", "json", str(spool_dir), "noop",
        env=dict(os.environ),
    )  # fmt: skip
    try:
        _wait_for(lambda: daemon.matching("upload_failed"), 30)
        time.sleep(2)  # about ten more cycles, rescanning the same file
        (spool_dir / "new" / "good.txt").write_text("y")
        _wait_for(lambda: daemon.matching('"uploaded": 1'), 10)
        assert len(daemon.matching("upload_failed")) == 1, daemon.stderr
        os.utime(bad, (time.time() + 5, time.time() + 5))  # rewritten: a new file
        _wait_for(lambda: len(daemon.matching("upload_failed")) == 2, 10)
        code = daemon.stop(signal.SIGTERM)
    finally:
        daemon.close()
    assert code == 0
    events = [json.loads(line) for line in daemon.lines]
    assert len([e for e in events if e["event"] == "upload_failed"]) == 2, daemon.stderr
    summaries = [e for e in events if e["event"] == "summary"]
    assert len(summaries) <= 3, summaries  # the first failure, the good file, the second one
    assert bad.exists()
    assert (spool_dir / "completed" / "good.txt").exists()


def test_idle_daemon_heartbeat_at_most_every_few_minutes() -> None:
    events: list[Event] = []
    runner = cast("Runner", type("R", (), {"bus": EventBus([events.append])})())
    now = time.monotonic()
    idle = Summary()
    assert _heartbeat(runner, idle, now - 10, 1) == now - 10
    assert events == []
    later = _heartbeat(runner, idle, now - HEARTBEAT_SECONDS - 1, 2)
    assert later >= now
    assert len(events) == 1
    assert isinstance(events[0], DaemonIdle)
    assert events[0].spools == 2
    assert HEARTBEAT_SECONDS <= 300


# -- 9.16: summaries that tell the truth -----------------------------------------------------


def test_summary_of_a_fatal_stop_says_stopped_and_why(
    seaweed: SeaweedServer, spool_dir: Path
) -> None:
    make_files(spool_dir / "new", 2)
    result = run_cli(spool_dir, "s3://no-such-bucket-here/", env=seaweed.env())
    assert result.returncode == 1
    (summary,) = [line for line in result.stderr.splitlines() if "summary:" in line]
    assert "stopped: " in summary
    assert "bucket" in summary.lower()


def test_summary_of_a_dry_run_says_what_it_would_do(spool_dir: Path) -> None:
    make_files(spool_dir / "new", 3)
    completed = spool_dir / "completed"
    make_files(completed, 2, prefix="old")
    for path in completed.iterdir():
        os.utime(path, (time.time() - 7200, time.time() - 7200))
    result = run_cli("--dry-run", spool_dir, "noop")
    assert result.returncode == 0, result.stderr
    (summary,) = [line for line in result.stderr.splitlines() if "summary" in line]
    assert "would upload 3 files" in summary
    assert "would delete 2 files" in summary
    assert "uploaded=0" not in summary


# -- issue 10: a one-shot run without an event loop ------------------------------------------


def test_a_one_shot_run_leaves_no_signal_handler_behind_even_when_setup_fails(
    spool_dir: Path,
) -> None:
    """``run()`` takes SIGTERM/SIGINT through a wakeup pipe while it runs (no asyncio loop);
    afterwards, and when a destination cannot be set up, the handlers and the wakeup fd are
    the process's own again."""
    from spool_tool.config import Config, parse_destination  # noqa: PLC0415
    from spool_tool.errors import ConfigError  # noqa: PLC0415
    from spool_tool.run import run  # noqa: PLC0415

    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    make_files(spool_dir / "new", 2)
    config = Config(spool_dirs=(spool_dir,), destination=parse_destination("noop"))
    assert run(config).uploaded == 2

    def refuse(_: Config) -> None:
        raise ConfigError("no such profile")

    with pytest.raises(ConfigError):
        run(config, destination_factory=refuse)  # type: ignore[arg-type]
    assert {s: signal.getsignal(s) for s in before} == before
    assert signal.set_wakeup_fd(-1) == -1  # none was left installed


@pytest.mark.parametrize(("files", "workers"), [(3, 3), (300, 64)])
def test_a_run_of_a_few_files_starts_as_many_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: int, workers: int
) -> None:
    """Each ``Thread.start`` waits for its thread: a cron run of 3 files starts 3 workers, not
    ``--concurrency``; a spool of more than one claim batch (256) gets all of them."""
    spool = tmp_path / "spool"
    make_files(spool / "new", files)
    started: list[str] = []
    start = threading.Thread.start

    def recording_start(self: threading.Thread) -> None:
        if self.name.startswith("ship-"):
            started.append(self.name)
        start(self)

    monkeypatch.setattr(threading.Thread, "start", recording_start)
    config = Config(
        spool_dirs=(spool,),
        destination=parse_destination("noop"),
        template=KeyTemplate.parse("{fname}"),
        concurrency=64,
    )
    summary = run(config)
    assert summary.uploaded == files
    assert len(started) == workers
    assert len(list((spool / "completed").iterdir())) == files
