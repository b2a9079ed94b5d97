"""FAULT-MATRIX rows 2 (daemon), 11 (SIGKILL inside a single PUT) and 19 (device node).

Everything runs the real CLI in a subprocess against SeaweedFS, with
``tests.faults.proxy.FaultProxy`` in front of it where the network must misbehave:

* row 11: the proxy holds a single PUT (``stall_before``: never forwarded; ``stall_after``: the
  write is applied, the answer withheld) and the process is SIGKILLed while the PUT is on the
  wire, on both single-PUT engines. The rerun must ship each file exactly once, at the key
  journaled before the first attempt (``{uuid4}`` in the template shows any second object).
* row 2: ``--watch`` against a proxy that answers 503 to every PUT: the daemon backs off
  (5 s, doubling) instead of spinning, and ships the files once S3 recovers.
* row 19: a character device (``/dev/null``'s numbers) in ``new/`` is skipped and never opened
  (checked with inotify ``IN_OPEN`` on the node).
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pytest

from spool_tool.journal import Journal
from tests.faults.proxy import FaultProxy, FaultRule
from tests.faults.runs import UNIQUE, assert_retry_ok
from tests.helpers import SPOOL_TOOL, Daemon, list_objects, make_files, run_cli

if TYPE_CHECKING:
    from devtools.seaweed import SeaweedServer

Engine = Literal["obstore", "boto3"]
ENGINES: list[Engine] = ["obstore", "boto3"]
PUT = frozenset({"PUT"})


def proxy_env(seaweed: SeaweedServer, proxy: FaultProxy) -> dict[str, str]:
    env = {**os.environ, **seaweed.env()}
    env["AWS_ENDPOINT_URL"] = env["AWS_ENDPOINT_URL_S3"] = proxy.url
    return env


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``predicate`` every 20 ms; returns the seconds it took."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, f"{what}: not within {timeout} s"
        time.sleep(0.02)
    return time.monotonic() - started


def puts_seen(proxy: FaultProxy) -> int:
    return sum(1 for r in proxy.history() if r.method == "PUT")


def journaled_keys(spool: Path) -> dict[str, str]:
    journal = Journal.read_only(spool)
    assert journal is not None, "no journal: the run was killed before claiming"
    try:
        return {name: claim.key for name, claim in journal.claims.items()}
    finally:
        journal.close()


# ------------------------------------------------------------------------------- row 11


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("action", ["stall_before", "stall_after"])
def test_sigkill_during_a_single_put_then_rerun_ships_each_file_once(
    seaweed: SeaweedServer,
    s3_bucket: str,
    spool_dir: Path,
    proxy: FaultProxy,
    engine: Engine,
    action: Literal["stall_before", "stall_after"],
) -> None:
    """Row 11: SIGKILL while single PUTs are on the wire. ``stall_before``: the proxy holds
    each PUT before forwarding it, so the kill lands inside the request (nothing is written).
    ``stall_after``: the write is applied but the answer withheld, so the kill lands after S3
    stored the object and before the tool knew. Either way the rerun (S3 healthy again) ends
    with one byte-identical object per file at the journaled key and nothing left in new/."""
    contents = make_files(spool_dir / "new", 3, size=200_000)
    proxy.set_rules([FaultRule(action=action, methods=PUT, stall_seconds=8)])
    env = proxy_env(seaweed, proxy)
    args = ["--engine", engine, "--format", UNIQUE, str(spool_dir), f"s3://{s3_bucket}"]
    proc = subprocess.Popen(
        [*SPOOL_TOOL, *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    client = seaweed.client()
    try:
        if action == "stall_before":
            wait_for(lambda: puts_seen(proxy) >= 1, 10, "no PUT reached the proxy")
        else:  # every write applied, every answer still held by the proxy
            wait_for(lambda: len(list_objects(client, s3_bucket)) == 3, 10, "writes not applied")
        proc.send_signal(signal.SIGKILL)
        _, stderr = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == -signal.SIGKILL, stderr
    assert proxy.stats.by_method.get("PUT", 0) <= 3  # killed inside the first attempts
    assert sorted(p.name for p in (spool_dir / "new").iterdir()) == sorted(contents)
    first_keys = journaled_keys(spool_dir)  # claimed (and journaled) before the first PUT
    assert sorted(first_keys) == sorted(contents)
    if action == "stall_before":
        assert list_objects(client, s3_bucket) == {}  # a held PUT is never applied
    else:
        assert sorted(list_objects(client, s3_bucket)) == sorted(first_keys.values())

    proxy.clear()
    rerun = run_cli(*args, env=env, timeout=30)

    assert rerun.returncode == 0, rerun.stderr
    assert "Traceback" not in rerun.stderr
    assert_retry_ok(client, s3_bucket, spool_dir, contents, first_keys)
    assert journaled_keys(spool_dir) == {}


# ------------------------------------------------------------------------------- row 19


def test_device_node_in_new_is_skipped_never_opened_and_left(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path
) -> None:
    """Row 19: a character device in new/ (same numbers as /dev/null) is skipped, never
    opened (no inotify IN_OPEN on it), not claimed and left in place; the run exits 0 and the
    regular file next to it is shipped."""
    inotify_simple = pytest.importorskip("inotify_simple")
    new = spool_dir / "new"
    device = new / "null.dev"
    try:
        os.mknod(device, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError as exc:
        pytest.skip(f"cannot create a device node here: {exc}")
    (new / "regular.txt").write_bytes(b"regular bytes\n")
    before = os.lstat(device)
    watcher = inotify_simple.INotify()
    watched = inotify_simple.flags.OPEN | inotify_simple.flags.ACCESS
    watcher.add_watch(device, watched)
    try:
        result = run_cli("-v", spool_dir, f"s3://{s3_bucket}", env=seaweed.env(), timeout=30)
        opened = watcher.read(timeout=0)
        # The watch works: our own open of the node is reported.
        os.close(os.open(device, os.O_RDONLY | os.O_NONBLOCK))
        sanity = watcher.read(timeout=1000)
    finally:
        watcher.close()

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert opened == [], "spool_tool opened the device node"
    assert sanity, "inotify did not report an open of the node: the check above proves nothing"
    skipped = [
        line for line in result.stderr.splitlines() if "skipped" in line and "null.dev" in line
    ]
    assert len(skipped) == 1, result.stderr
    assert "character device" in skipped[0]
    after = os.lstat(device)
    assert stat.S_ISCHR(after.st_mode)
    assert (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)
    assert sorted(p.name for p in new.iterdir()) == ["null.dev"]
    assert sorted(p.name for p in (spool_dir / "completed").iterdir()) == ["regular.txt"]
    assert list(list_objects(seaweed.client(), s3_bucket)) == ["regular.txt"]
    assert journaled_keys(spool_dir) == {}


# ------------------------------------------------------------------------------- row 2 (daemon)

BACKOFF_LINE = "S3 is failing: next attempt in"


def test_watch_backs_off_under_sustained_throttling_then_ships_once_s3_recovers(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, proxy: FaultProxy
) -> None:
    """Row 2, daemon: every PUT answered 503. The first cycle stops after
    ``TRANSIENT_FAILURE_LIMIT`` (20) files in a row, the daemon logs the backoff (5 s) and sends
    nothing while it waits, although ``--interval`` is 1 s; once S3 recovers the next cycle
    (at the end of the backoff, not before) ships every file once. SIGTERM -> exit 0."""
    contents = make_files(spool_dir / "new", 25, size=300)
    proxy.set_rules([FaultRule(action="status", methods=PUT, status=503, code="SlowDown")])
    daemon = Daemon(
        "--interval", "1", "--concurrency", "4", "--max-attempts", "2", "--format", UNIQUE,
        str(spool_dir), f"s3://{s3_bucket}", env=proxy_env(seaweed, proxy),
    )  # fmt: skip
    client = seaweed.client()
    try:
        wait_for(lambda: bool(daemon.matching(BACKOFF_LINE)), 10, "no backoff logged")
        backoff_started = time.monotonic()
        throttled_puts = puts_seen(proxy)
        assert daemon.matching(BACKOFF_LINE)[0].endswith("next attempt in 5 s"), daemon.stderr
        assert daemon.matching("S3 kept failing"), daemon.stderr
        failed = daemon.matching("ERROR failed ")
        assert 20 <= len(failed) <= 24, daemon.stderr  # the limit, plus at most 4 in flight
        assert throttled_puts <= 2 * 24  # --max-attempts 2, no retry storm
        # Without the backoff, --interval 1 would start 2+ more cycles in the next 3.5 s.
        time.sleep(3.5)
        assert puts_seen(proxy) == throttled_puts, "the daemon sent PUTs during its backoff"
        assert len(daemon.matching(BACKOFF_LINE)) == 1

        proxy.clear()  # S3 recovers during the backoff
        wait_for(lambda: not any((spool_dir / "new").iterdir()), 6, "not shipped after backoff")
        recovered_after = time.monotonic() - backoff_started
        assert recovered_after >= 4.5, "retried before the backoff ran out"
        code = daemon.stop(signal.SIGTERM)
    finally:
        daemon.close()
    # Read the log only once the daemon has exited: info lines are written in batches (up to
    # 0.2 s late), so an " uploaded " line can still be buffered when new/ is already empty.
    first_keys = journaled_keys_from_failures(daemon.matching("ERROR failed "), s3_bucket)
    for line in daemon.matching(" uploaded "):
        uri = line.split(" -> ", 1)[1].split(" (", 1)[0]
        key = uri.removeprefix(f"s3://{s3_bucket}/")
        first_keys.setdefault(key.rsplit("/", 1)[-1], key)
    assert code == 0, daemon.stderr  # a signal is how a daemon stops, failed cycles or not
    assert daemon.matching("received SIGTERM"), daemon.stderr
    assert "Traceback" not in daemon.stderr
    assert len(daemon.matching(BACKOFF_LINE)) == 1  # no failure after recovery
    assert_retry_ok(client, s3_bucket, spool_dir, contents, first_keys)


def journaled_keys_from_failures(lines: list[str], bucket: str) -> dict[str, str]:
    """File name -> key from ``ERROR failed PATH -> s3://BUCKET/KEY: cause`` lines."""
    keys: dict[str, str] = {}
    for line in lines:
        uri = line.split(" -> ", 1)[1].split(": ", 1)[0]
        key = uri.removeprefix(f"s3://{bucket}/")
        keys.setdefault(key.rsplit("/", 1)[-1], key)
    return keys


def test_watch_backs_off_when_every_upload_of_a_cycle_failed_on_s3(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, proxy: FaultProxy
) -> None:
    """Row 2, daemon, a small spool: one file, every PUT answered 503. watch.py promises
    "a cycle that ended on an S3 failure backs off exponentially (5 s doubling to 5 min)
    instead of spinning"; here every cycle ends on an S3 failure."""
    make_files(spool_dir / "new", 1, size=300)
    proxy.set_rules([FaultRule(action="status", methods=PUT, status=503, code="SlowDown")])
    daemon = Daemon(
        "--interval", "1", "--max-attempts", "2", str(spool_dir), f"s3://{s3_bucket}",
        env=proxy_env(seaweed, proxy),
    )  # fmt: skip
    try:
        wait_for(lambda: bool(daemon.matching("ERROR failed ")), 10, "no failure logged")
        first_cycle_puts = puts_seen(proxy)
        time.sleep(3.5)
        later_puts = puts_seen(proxy)
        backoff_logged = bool(daemon.matching(BACKOFF_LINE))
        code = daemon.stop(signal.SIGTERM)
    finally:
        daemon.close()
    assert code == 0, daemon.stderr
    assert backoff_logged, daemon.stderr
    assert later_puts == first_cycle_puts, f"{later_puts - first_cycle_puts} PUTs during backoff"


def test_watch_exits_0_on_sigterm_after_a_failed_cycle(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, proxy: FaultProxy
) -> None:
    """README, daemon mode: "SIGTERM or SIGINT: ... the daemon exits 0", also after a failed
    cycle. The single file fails once (503 on both attempts of the first cycle; one failure is
    below the stop limit, so no backoff), the next cycle (--interval 1) ships it, SIGTERM."""
    make_files(spool_dir / "new", 1, size=300)
    proxy.set_rules([FaultRule(action="status", methods=PUT, status=503, code="SlowDown", times=2)])
    daemon = Daemon(
        "--interval", "1", "--max-attempts", "2", str(spool_dir), f"s3://{s3_bucket}",
        env=proxy_env(seaweed, proxy),
    )  # fmt: skip
    try:
        wait_for(lambda: bool(daemon.matching(" uploaded ")), 10, "not shipped by cycle 2")
        assert len(daemon.matching("ERROR failed ")) == 1, daemon.stderr
        code = daemon.stop(signal.SIGTERM)
    finally:
        daemon.close()
    assert "Traceback" not in daemon.stderr
    assert code == 0, daemon.stderr
