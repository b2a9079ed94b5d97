"""Unit tests for ``spool_tool.scan.iter_eligible``."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spool_tool.scan import FUTURE_TOLERANCE_SECONDS, SCAN_WINDOW, Candidate, iter_eligible

NOW = 1_700_000_000  # integer seconds: exact as a float and as nanoseconds
NS = 10**9


class Skips:
    """Collects what ``iter_eligible`` reports to ``on_skip``."""

    def __init__(self) -> None:
        self.seen: list[tuple[Path, str, bool]] = []

    def __call__(self, path: Path, reason: str, warning: bool) -> None:
        self.seen.append((path, reason, warning))

    def by_name(self) -> dict[str, tuple[str, bool]]:
        return {p.name: (reason, warn) for p, reason, warn in self.seen}


@pytest.fixture
def new_dir(tmp_path: Path) -> Path:
    d = tmp_path / "spool" / "new"
    d.mkdir(parents=True)
    return d


def make(new_dir: Path, name: str, age_seconds: float, data: bytes = b"x") -> Path:
    """A regular file whose mtime is ``age_seconds`` before ``NOW``."""
    path = new_dir / name
    path.write_bytes(data)
    mtime_ns = NOW * NS - round(age_seconds * NS)
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def names(cands: Iterator[Candidate] | list[Candidate]) -> list[str]:
    return [c.name for c in cands]


def scan(
    new_dir: Path, hold: float = 0, window: int = SCAN_WINDOW
) -> tuple[list[Candidate], Skips]:
    skips = Skips()
    found = iter_eligible(new_dir, hold_for_seconds=hold, now=NOW, on_skip=skips, window=window)
    return list(found), skips


def test_regular_files_oldest_first(new_dir: Path) -> None:
    make(new_dir, "b", 10)
    make(new_dir, "a", 30)
    make(new_dir, "c", 20)
    make(new_dir, "d", 0.000_000_5)  # 500 ns: ordering uses mtime_ns
    make(new_dir, "e", 0.000_001)
    found, skips = scan(new_dir)
    assert names(found) == ["a", "c", "b", "e", "d"]
    assert skips.seen == []
    for c in found:
        assert c.path == new_dir / c.name
        assert c.st.st_ino == os.lstat(c.path).st_ino


def test_equal_mtimes_are_ordered_by_name(new_dir: Path) -> None:
    for n in ("z", "m", "a"):
        make(new_dir, n, 5)
    assert names(scan(new_dir)[0]) == ["a", "m", "z"]


def test_empty_directory(new_dir: Path) -> None:
    found, skips = scan(new_dir)
    assert found == []
    assert skips.seen == []


def test_non_regular_entries_are_skipped_and_reported(
    new_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make(new_dir, "regular", 100)
    outside = tmp_path / "outside"
    outside.write_bytes(b"secret")
    os.symlink(outside, new_dir / "link_to_file")
    os.symlink(new_dir / "regular", new_dir / "link_in_spool")
    os.symlink(new_dir / "missing", new_dir / "dangling")
    (new_dir / "subdir").mkdir()
    (new_dir / "subdir" / "inner").write_bytes(b"x")
    os.mkfifo(new_dir / "fifo")
    monkeypatch.chdir(new_dir)  # AF_UNIX paths are short: bind by relative name
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind("sock")
        found, skips = scan(new_dir)
    finally:
        sock.close()
    assert names(found) == ["regular"]
    reported = skips.by_name()
    assert reported == {
        "link_to_file": ("not a regular file (symlink)", False),
        "link_in_spool": ("not a regular file (symlink)", False),
        "dangling": ("not a regular file (symlink)", False),
        "subdir": ("not a regular file (directory)", False),
        "fifo": ("not a regular file (FIFO)", False),
        "sock": ("not a regular file (socket)", False),
    }
    assert len(skips.seen) == len(reported)  # each reported once
    assert outside.read_bytes() == b"secret"


def test_fifo_never_blocks(new_dir: Path) -> None:
    os.mkfifo(new_dir / "fifo")
    make(new_dir, "f", 5)
    result: list[list[str]] = []
    worker = threading.Thread(target=lambda: result.append(names(scan(new_dir)[0])), daemon=True)
    worker.start()
    worker.join(timeout=5)
    if worker.is_alive():  # unblock a reader stuck in open() before failing
        fd = os.open(new_dir / "fifo", os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        pytest.fail("iter_eligible blocked on a FIFO")
    assert result == [["f"]]


def test_vanished_entry_is_ignored(new_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make(new_dir, "stays", 5)
    make(new_dir, "goes", 5)
    real_scandir = os.scandir

    class Vanishing:
        def __init__(self, path: Path) -> None:
            self._it = real_scandir(path)

        def __enter__(self) -> Iterator[os.DirEntry[str]]:
            return self._gen()

        def _gen(self) -> Iterator[os.DirEntry[str]]:
            for entry in self._it:
                if entry.name == "goes":
                    os.unlink(entry.path)
                yield entry

        def __exit__(self, *exc: object) -> None:
            self._it.close()

    monkeypatch.setattr(os, "scandir", Vanishing)
    found, skips = scan(new_dir)
    assert names(found) == ["stays"]
    assert skips.seen == []


# -- hold_for ---------------------------------------------------------------------------------


def test_hold_for_boundary(new_dir: Path) -> None:
    hold = 300.0
    make(new_dir, "exactly", hold)
    make(new_dir, "just_under", hold - 0.001)
    make(new_dir, "over", hold + 1)
    make(new_dir, "fresh", 0)
    found, skips = scan(new_dir, hold)
    assert names(found) == ["over", "exactly"]
    assert skips.seen == []  # too young is not a skip worth reporting


def test_hold_for_zero_takes_a_file_written_now(new_dir: Path) -> None:
    make(new_dir, "now", 0)
    assert names(scan(new_dir, 0)[0]) == ["now"]


@pytest.mark.parametrize("hold", [0.0, 0.5, 60.0])
def test_future_mtime_eligible_only_without_hold_and_always_warned(
    new_dir: Path, hold: float
) -> None:
    make(new_dir, "future", -3600)
    make(new_dir, "old", 3600)
    found, skips = scan(new_dir, hold)
    expected = ["old", "future"] if hold == 0 else ["old"]
    assert sorted(names(found)) == sorted(expected)
    assert len(skips.seen) == 1
    path, reason, warning = skips.seen[0]
    assert path == new_dir / "future"
    assert "future" in reason
    assert warning is True


def test_small_clock_skew_is_not_warned(new_dir: Path) -> None:
    make(new_dir, "slightly_ahead", -(FUTURE_TOLERANCE_SECONDS / 2))
    _, skips = scan(new_dir, 0)
    assert skips.seen == []


# -- windows ----------------------------------------------------------------------------------


def test_window_sorts_within_each_window(new_dir: Path) -> None:
    ages = {"f0": 10, "f1": 70, "f2": 30, "f3": 50, "f4": 20, "f5": 60, "f6": 40}
    for n, age in ages.items():
        make(new_dir, n, age)
    directory_order = [e.name for e in os.scandir(new_dir)]
    found, _ = scan(new_dir, window=3)
    expected: list[str] = []
    for start in range(0, 7, 3):
        chunk = directory_order[start : start + 3]
        expected += sorted(chunk, key=lambda n: -ages[n])
    assert names(found) == expected
    assert sorted(names(found)) == sorted(ages)


def test_window_counts_only_eligible_files(new_dir: Path) -> None:
    for i in range(6):
        make(new_dir, f"old{i}", 100 + i)
        make(new_dir, f"young{i}", 1)
    found, _ = scan(new_dir, 50, window=2)
    assert sorted(names(found)) == [f"old{i}" for i in range(6)]


def test_first_window_is_yielded_before_the_rest_is_read(new_dir: Path) -> None:
    for i in range(5):
        make(new_dir, f"f{i}", i)
    order = [e.name for e in os.scandir(new_dir)]
    it = iter_eligible(new_dir, hold_for_seconds=0, now=NOW, window=2)
    first = next(it)
    assert first.name == max(order[:2], key=lambda n: int(n[1:]))  # oldest of the first window
    for name in order[2:]:  # not read yet: removing them now means they are never yielded
        os.unlink(new_dir / name)
    assert [c.name for c in it] == [min(order[:2], key=lambda n: int(n[1:]))]


# -- property ---------------------------------------------------------------------------------

FILES = st.dictionaries(
    keys=st.text(alphabet="abcdefghij0123456789._-", min_size=1, max_size=8).filter(
        lambda s: s not in {".", ".."}
    ),
    values=st.integers(min_value=-7200, max_value=7200),
    max_size=12,
)


@given(
    files=FILES,
    hold=st.sampled_from([0, 1, 30, 60, 600, 3600]),
    window=st.integers(min_value=1, max_value=20),
)
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_property_yields_exactly_the_old_enough_files(
    files: dict[str, int], hold: int, window: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for name, age in files.items():
            make(d, name, age)
        skips = Skips()
        found = list(iter_eligible(d, hold_for_seconds=hold, now=NOW, on_skip=skips, window=window))
    expected = {
        n
        for n, age in files.items()
        if hold == 0 or age >= hold  # with hold-for 0 every regular file is eligible
    }
    assert len(found) == len({c.name for c in found})  # no duplicates
    assert {c.name for c in found} == expected
    warned = {p.name for p, _, w in skips.seen if w}
    assert warned == {n for n, age in files.items() if age < -FUTURE_TOLERANCE_SECONDS}
    if window >= len(files):  # one window: globally oldest first
        assert names(found) == sorted(names(found), key=lambda n: (-files[n], n))
