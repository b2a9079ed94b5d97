"""Unit tests for ``spool_tool.backlog``: the ``--status`` numbers and the backlog gauges."""

from __future__ import annotations

import io
import json
import os
import socket
import tracemalloc
from pathlib import Path

import pytest
from rich.console import Console

from spool_tool.backlog import (
    Backlog,
    human_age,
    human_bytes,
    measure_backlog,
    render_table,
    to_json,
)
from spool_tool.journal import Claim, Journal
from tests.helpers import permissions_enforced, run_cli

NOW = 1_700_000_000  # integer seconds: exact as a float and as nanoseconds
NS = 10**9


def make(directory: Path, name: str, age_seconds: float, size: int = 1) -> Path:
    """A regular file of ``size`` bytes whose mtime is ``age_seconds`` before ``NOW``."""
    path = directory / name
    path.write_bytes(b"x" * size)
    mtime_ns = NOW * NS - round(age_seconds * NS)
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def snapshot(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every entry under ``root`` (hidden ones too): mode, size, mtime. Symlinks not followed."""
    seen: dict[str, tuple[int, int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            seen[os.path.relpath(path, root)] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return seen


def measure(spool: Path, hold: float = 0) -> Backlog:
    return measure_backlog(spool, hold_for_seconds=hold, now=NOW)


def test_counts_bytes_eligible_and_oldest_age(spool_dir: Path) -> None:
    new = spool_dir / "new"
    make(new, "young", 10, size=100)
    make(new, "almost", 59, size=200)
    make(new, "exactly", 60, size=300)
    make(new, "old", 3600, size=400)

    b = measure(spool_dir, hold=60)
    assert b == Backlog(
        spool_dir=str(spool_dir),
        files_waiting=4,
        bytes_waiting=1000,
        eligible_now=2,  # "exactly" and "old", the same rule as scan.is_old_enough
        oldest_age_seconds=3600.0,
        claims_in_flight=0,
        completed_files=0,
        completed_bytes=0,
        exists=True,
    )
    assert measure(spool_dir, hold=0).eligible_now == 4
    assert measure(spool_dir, hold=7200).eligible_now == 0


def test_empty_spool(spool_dir: Path) -> None:
    b = measure(spool_dir, hold=60)
    assert b == Backlog(spool_dir=str(spool_dir), exists=True)
    assert b.oldest_age_seconds is None


def test_future_mtime_counts_with_age_zero(spool_dir: Path) -> None:
    make(spool_dir / "new", "future", -3600)
    b = measure(spool_dir, hold=60)
    assert (b.files_waiting, b.eligible_now, b.oldest_age_seconds) == (1, 0, 0.0)
    assert measure(spool_dir, hold=0).eligible_now == 1  # hold_for 0: everything is eligible


def test_only_regular_files_count(spool_dir: Path, tmp_path: Path) -> None:
    new = spool_dir / "new"
    make(new, "real", 100, size=10)
    outside = make(tmp_path, "outside", 99_999, size=5000)
    (new / "link").symlink_to(outside)
    (new / "dangling").symlink_to(tmp_path / "nowhere")
    (new / "subdir").mkdir()
    make(new / "subdir", "nested", 99_999, size=7000)
    os.mkfifo(new / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(new / "sock"))
        b = measure(spool_dir)
    finally:
        sock.close()
    assert (b.files_waiting, b.bytes_waiting, b.eligible_now) == (1, 10, 1)
    assert b.oldest_age_seconds == 100.0


def test_completed_files(spool_dir: Path) -> None:
    completed = spool_dir / "completed"
    completed.mkdir()
    make(completed, "a", 1, size=1000)
    make(completed, "b", 1, size=24)
    (completed / "dir").mkdir()
    (completed / "link").symlink_to(completed / "a")
    b = measure(spool_dir)
    assert (b.completed_files, b.completed_bytes) == (2, 1024)
    assert (b.files_waiting, b.bytes_waiting) == (0, 0)


def test_claims_in_flight_from_the_journal(spool_dir: Path) -> None:
    make(spool_dir / "new", "a.csv", 100)
    with Journal.open(spool_dir) as journal:
        journal.add_claims([Claim("a.csv", 1, 2, "p/a.csv"), Claim("b.csv", 1, 3, "p/b.csv")])
        journal.add_claims([Claim("c.csv", 1, 4, "p/c.csv")])
        # A run holding the lock does not block --status, and its claims are seen.
        assert measure(spool_dir).claims_in_flight == 3
    before = snapshot(spool_dir)
    assert measure(spool_dir).claims_in_flight == 3
    assert snapshot(spool_dir) == before  # no -wal/-shm left behind by the read-only open


def test_changes_nothing_on_disk(spool_dir: Path, tmp_path: Path) -> None:
    new = spool_dir / "new"
    make(new, "a", 100)
    make(new, "b", 1)
    os.mkfifo(new / "fifo")
    (new / "link").symlink_to(tmp_path / "nowhere")
    before_tree = snapshot(tmp_path)
    before_spool = os.lstat(spool_dir)
    before_new = os.lstat(new)

    measure(spool_dir, hold=60)

    assert snapshot(tmp_path) == before_tree
    assert not (spool_dir / ".spool_tool").exists()
    assert not (spool_dir / "completed").exists()
    for path, st in ((spool_dir, before_spool), (new, before_new)):
        after = os.lstat(path)
        assert (after.st_mtime_ns, after.st_ctime_ns, after.st_nlink) == (
            st.st_mtime_ns,
            st.st_ctime_ns,
            st.st_nlink,
        )


def test_missing_spool_or_new(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    assert measure(missing) == Backlog(spool_dir=str(missing), exists=False)
    assert not missing.exists()

    no_new = tmp_path / "spool"
    no_new.mkdir()
    b = measure(no_new)
    assert not b.exists
    assert not (no_new / "new").exists()
    assert os.listdir(no_new) == []

    a_file = tmp_path / "file"
    a_file.write_text("")
    assert not measure(a_file).exists


def test_unreadable_new_is_reported_not_raised(
    spool_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 9.1: a ``new/`` that cannot be read gives a backlog with an error, not an
    exception (``--status`` and the daemon's gauges go on with the other spools)."""
    real_scandir = os.scandir

    def denied(path: Path | int) -> object:
        if Path(str(path)) == spool_dir / "new":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", denied)
    backlog = measure(spool_dir)
    assert not backlog.ok
    assert backlog.error == f"{spool_dir / 'new'}: cannot read the directory: Permission denied"
    assert backlog.files_waiting == 0


def test_status_of_an_unreadable_new_is_one_line_and_others_are_shown(tmp_path: Path) -> None:
    """Issue 9.1, end to end: one line naming the directory and the cause, the other spool
    still in the table, exit 1."""
    prefix = permissions_enforced()
    locked, fine = tmp_path / "locked", tmp_path / "fine"
    for spool in (locked, fine):
        (spool / "new").mkdir(parents=True)
        make(spool / "new", "a", 5)
    (locked / "new").chmod(0)
    try:
        result = run_cli("--status", locked, fine, prefix=prefix, env={"COLUMNS": "200"})
    finally:
        (locked / "new").chmod(0o755)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        f"spool_tool: {locked / 'new'}: cannot read the directory: Permission denied"
    ]
    assert "unreadable" in result.stdout
    assert str(fine) in result.stdout


def test_memory_does_not_grow_with_the_number_of_files(spool_dir: Path) -> None:
    """Streaming: the files are never held in memory (a list of 5000 stats would be ~1 MB;
    the streaming count peaks at a few KB whatever the number of files)."""
    new = spool_dir / "new"
    for i in range(5000):
        fd = os.open(new / f"f{i:05d}", os.O_CREAT | os.O_WRONLY, 0o644)
        os.close(fd)
    tracemalloc.start()
    try:
        b = measure(spool_dir)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert b.files_waiting == 5000
    assert peak < 64 * 1024, peak


def test_json_document() -> None:
    backlogs = [
        Backlog(
            spool_dir="/var/spool/a",
            files_waiting=3,
            bytes_waiting=4096,
            eligible_now=2,
            oldest_age_seconds=125.5,
            claims_in_flight=1,
            completed_files=7,
            completed_bytes=70,
            files_excluded=2,
            bytes_excluded=20,
        ),
        Backlog(spool_dir="/var/spool/missing", exists=False),
        Backlog(spool_dir=os.fsdecode(b"/var/spool/\xff"), exists=True),
    ]
    doc = json.loads(to_json(backlogs, generated_at=NOW))
    assert doc["generated_at"] == NOW
    assert doc["spools"][0] == {
        "spool_dir": "/var/spool/a",
        "exists": True,
        "error": None,
        "files_waiting": 3,
        "bytes_waiting": 4096,
        "eligible_now": 2,
        "oldest_age_seconds": 125.5,
        "claims_in_flight": 1,
        "completed_files": 7,
        "completed_bytes": 70,
        "files_excluded": 2,
        "bytes_excluded": 20,
    }
    assert doc["spools"][1]["exists"] is False
    assert doc["spools"][1]["oldest_age_seconds"] is None
    assert doc["spools"][2]["spool_dir"] == "/var/spool/\\xff"
    assert "\n" not in to_json(backlogs)  # one document, one line
    assert isinstance(json.loads(to_json([]))["generated_at"], float)


def test_json_from_a_real_spool(spool_dir: Path) -> None:
    make(spool_dir / "new", "a", 90, size=12)
    doc = json.loads(to_json([measure(spool_dir, hold=60)], generated_at=NOW))
    (spool,) = doc["spools"]
    assert spool["files_waiting"] == 1
    assert spool["bytes_waiting"] == 12
    assert spool["eligible_now"] == 1
    assert spool["oldest_age_seconds"] == 90.0


def test_table_renders_the_numbers() -> None:
    backlogs = [
        Backlog(
            spool_dir="/var/spool/[bold]a",
            files_waiting=1234,
            bytes_waiting=5 * 1024 * 1024,
            eligible_now=1200,
            oldest_age_seconds=3725,
            claims_in_flight=16,
            completed_files=98765,
            completed_bytes=512,
        ),
        Backlog(spool_dir="/var/spool/gone", exists=False),
    ]
    console = Console(record=True, width=120, file=io.StringIO())
    render_table(backlogs, console)
    text = console.export_text()
    for expected in (
        "/var/spool/[bold]a",  # a path is not rich markup
        "1234",
        "5.0 MiB",
        "(5242880)",
        "1200",
        "1h 02m",
        "16",
        "98765",
        "512",
        "/var/spool/gone",
        "missing",
    ):
        assert expected in text, (expected, text)


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"), (5 << 30, "5.0 GiB")],
)
def test_human_bytes(n: int, text: str) -> None:
    assert human_bytes(n) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (0.0, "0.0s"),
        (2.54, "2.5s"),
        (59, "59s"),
        (75, "1m 15s"),
        (3725, "1h 02m"),
        (90_000, "1d 1h"),
    ],
)
def test_human_age(seconds: float | None, text: str) -> None:
    assert human_age(seconds) == text
