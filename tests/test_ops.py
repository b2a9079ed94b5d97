"""Operating it: --watch daemon, metrics (textfile and /metrics), --status, progress on a TTY."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client.parser import text_string_to_metric_families

from devtools.seaweed import free_port
from tests.helpers import SPOOL_TOOL, Daemon, list_objects, make_files, run_cli, snapshot

if TYPE_CHECKING:
    from devtools.seaweed import SeaweedServer


def metric_values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def wait_for(predicate: object, timeout: float) -> float:
    """Poll ``predicate()`` until true; returns the seconds it took (fails on timeout)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():  # type: ignore[operator]
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"condition not met within {timeout} s")


def start_daemon(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*SPOOL_TOOL, "--watch", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _events(daemon: Daemon) -> list[dict[str, object]]:
    return [json.loads(line) for line in list(daemon.lines) if line.startswith("{")]


def _uploaded_by_cycles(daemon: Daemon) -> int:
    """Files counted by the summaries of finished cycles (JSON logs)."""
    return sum(int(e["uploaded"]) for e in _events(daemon) if e["event"] == "summary")  # type: ignore[call-overload]


def test_watch_uploads_new_files_fast_and_exits_0_on_sigterm(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path
) -> None:
    port = free_port()
    daemon = Daemon(
        "--interval", "30", "--metrics-port", str(port), "--log-format", "json",
        str(spool_dir), f"s3://{s3_bucket}/w/", env={**os.environ, **seaweed.env()},
    )  # fmt: skip
    try:
        client = seaweed.client()
        metrics_url = f"http://127.0.0.1:{port}/metrics"
        wait_for(lambda: _answers(metrics_url), 30)
        latencies = []
        for i in range(3):
            tmp = spool_dir / f"tmp{i}"
            tmp.write_bytes(b"payload %d" % i)
            tmp.rename(spool_dir / "new" / f"drop{i}.txt")  # atomic placement
            latencies.append(
                wait_for(lambda i=i: f"w/drop{i}.txt" in list_objects(client, s3_bucket), 5)
            )
        # The contract is "within 5 s" (the goal, 1 s, is measured, not asserted: see
        # BENCHMARKS.md); a busy CI machine must not fail this test.
        assert max(latencies) < 5, latencies
        print(f"watch latency per file: {[round(x, 3) for x in latencies]} s")
        # The backlog gauges are measured when a cycle ends: wait for the end of the cycle
        # that shipped the last file (its summary), not merely for new/ to be empty.
        wait_for(lambda: _uploaded_by_cycles(daemon) == 3, 10)
        with urllib.request.urlopen(metrics_url, timeout=5) as response:
            values = metric_values(response.read().decode())
        assert values[("spool_tool_files_uploaded_total", ())] == 3
        assert values[("spool_tool_backlog_files", (("spool_dir", str(spool_dir)),))] == 0
        code = daemon.stop(signal.SIGTERM, timeout=30)
    finally:
        daemon.close()
    assert code == 0, daemon.stderr
    assert "Traceback" not in daemon.stderr
    events = _events(daemon)
    uploaded = {Path(str(e["file"])).name for e in events if e["event"] == "uploaded"}
    assert uploaded == {"drop0.txt", "drop1.txt", "drop2.txt"}


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except OSError:
        return False


def test_watch_honours_hold_for_timer(spool_dir: Path) -> None:
    daemon = start_daemon("--hold-for", "0.03", "--interval", "60", str(spool_dir), "noop", env={})
    try:
        time.sleep(1.5)  # let it start
        (spool_dir / "new" / "held.txt").write_text("x")
        written = time.monotonic()
        completed = spool_dir / "completed" / "held.txt"
        wait_for(completed.exists, 10)
        waited = time.monotonic() - written
        assert 1.5 <= waited <= 4.5, waited  # eligible after 1.8 s, not only at the next rescan
        daemon.send_signal(signal.SIGINT)
        daemon.communicate(timeout=30)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()
    assert daemon.returncode == 0


def test_metrics_textfile_counts_across_runs(spool_dir: Path, tmp_path: Path) -> None:
    textfile = tmp_path / "spool_tool.prom"
    make_files(spool_dir / "new", 3)
    assert run_cli("--metrics-file", textfile, spool_dir, "noop").returncode == 0
    make_files(spool_dir / "new", 2, prefix="g")
    assert run_cli("--metrics-file", textfile, spool_dir, "noop").returncode == 0
    values = metric_values(textfile.read_text())
    assert values[("spool_tool_files_uploaded_total", ())] == 5
    assert values[("spool_tool_backlog_files", (("spool_dir", str(spool_dir)),))] == 0
    assert values[("spool_tool_last_success_timestamp_seconds", ())] > time.time() - 60


def test_metrics_port_without_watch_is_usage_error(spool_dir: Path) -> None:
    result = run_cli("--metrics-port", "9999", spool_dir, "noop")
    assert result.returncode == 2
    assert "--watch" in result.stderr


def test_status_json_reports_backlog_and_changes_nothing(spool_dir: Path) -> None:
    new = spool_dir / "new"
    make_files(new, 4, size=100)
    old = new / "f00000.dat"
    os.utime(old, (time.time() - 600, time.time() - 600))
    (new / "link").symlink_to(old)
    before = snapshot(spool_dir)
    result = run_cli("--status", "--hold-for", "5", "--log-format", "json", spool_dir)
    assert result.returncode == 0, result.stderr
    assert snapshot(spool_dir) == before
    (spool,) = json.loads(result.stdout)["spools"]
    assert spool["files_waiting"] == 4
    assert spool["bytes_waiting"] == 400
    assert spool["eligible_now"] == 1
    assert 590 <= spool["oldest_age_seconds"] <= 700
    assert spool["claims_in_flight"] == 0


def test_status_table(spool_dir: Path) -> None:
    make_files(spool_dir / "new", 2)
    result = run_cli("--status", spool_dir)
    assert result.returncode == 0
    assert str(spool_dir) in result.stdout
    # a destination left on the command line is not taken for a spool dir
    result = run_cli("--status", "--log-format", "json", spool_dir, "s3://bucket/p/")
    assert result.returncode == 0
    assert [s["spool_dir"] for s in json.loads(result.stdout)["spools"]] == [str(spool_dir)]


def test_status_missing_spool_exits_1(tmp_path: Path) -> None:
    result = run_cli("--status", "--log-format", "json", tmp_path / "nope")
    assert result.returncode == 1
    assert json.loads(result.stdout)["spools"][0]["exists"] is False


def test_progress_only_on_a_terminal(spool_dir: Path) -> None:
    make_files(spool_dir / "new", 50)
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [*SPOOL_TOOL, str(spool_dir), "noop"], stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=secondary,
    )  # fmt: skip
    os.close(secondary)
    output = b""
    while True:
        ready, _, _ = select.select([primary], [], [], 10)
        if not ready:
            break
        try:
            chunk = os.read(primary, 65536)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    os.close(primary)
    assert proc.wait(timeout=30) == 0
    assert b"uploaded" in output
    # not a terminal: plain lines only, no control sequences
    make_files(spool_dir / "new", 5, prefix="g")
    result = run_cli(spool_dir, "noop")
    assert "\x1b[" not in result.stderr


def _two_spool_config(tmp_path: Path) -> tuple[Path, Path, Path]:
    a, b = tmp_path / "a", tmp_path / "b"
    for spool in (a, b):
        make_files(spool / "new", 1)
    config = tmp_path / "spool_tool.toml"
    config.write_text(
        'hold_for = 0\nformat = "global/{fname}"\n\n'
        f'[[spool]]\ndirs = ["{a}"]\ndestination = "noop"\nformat = "a/{{fname}}"\n\n'
        f'[[spool]]\ndirs = ["{b}"]\ndestination = "noop"\n'
    )
    return config, a, b


def test_config_file_runs_each_spool_with_its_settings(tmp_path: Path) -> None:
    config, a, b = _two_spool_config(tmp_path)
    result = run_cli("--config", config, "--log-format", "json")
    assert result.returncode == 0, result.stderr
    uris = {json.loads(line).get("uri") for line in result.stderr.splitlines()}
    assert {"noop://a/f00000.dat", "noop://global/f00000.dat"} <= uris
    assert (a / "completed" / "f00000.dat").exists()
    assert (b / "completed" / "f00000.dat").exists()


def test_command_line_and_environment_beat_the_config_file(tmp_path: Path) -> None:
    config, a, _ = _two_spool_config(tmp_path)
    result = run_cli("--config", config, "--dry-run", "--format", "cli/{fname}")
    assert "noop://cli/f00000.dat" in result.stdout
    assert "noop://a/" not in result.stdout
    result = run_cli("--config", config, "--dry-run", env={"SPOOL_TOOL_FORMAT": "env/{fname}"})
    assert "noop://env/f00000.dat" in result.stdout
    assert (a / "new" / "f00000.dat").exists()


def test_config_file_error_names_file_and_line(tmp_path: Path) -> None:
    config, a, _ = _two_spool_config(tmp_path)
    config.write_text(config.read_text().replace('format = "a/{fname}"', 'format = "{nope}"'))
    before = snapshot(a)
    result = run_cli("--config", config)
    assert result.returncode == 2
    assert f"{config}:7:" in result.stderr
    assert snapshot(a) == before
