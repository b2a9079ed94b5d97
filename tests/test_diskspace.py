"""Unit tests for ``spool_tool.diskspace`` (``--min-free``), on a faked filesystem size: free
space is a fixed total minus the blocks of the files the test created, so deleting a file
frees its blocks exactly as on a real disk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from spool_tool.config import MinFree
from spool_tool.destinations.base import ObjectInfo
from spool_tool.diskspace import SpaceReport, delete_for_space, free_space
from spool_tool.events import DeleteFailed, Event, EventBus, FileDeleted
from spool_tool.journal import Completion, Journal
from spool_tool.parsers import min_free
from spool_tool.spoolfs import SpoolFS

KIB = 1024
TOTAL = 1024 * KIB


class FakeDisk:
    """``statvfs`` of a 1 MiB filesystem holding only ``dirs`` (plus ``used`` other bytes)."""

    def __init__(self, *dirs: Path, used: int = 0) -> None:
        self.dirs = dirs
        self.used = used
        self.calls: list[object] = []

    def __call__(self, where: int | Path) -> os.statvfs_result:
        self.calls.append(where)
        used = self.used + sum(
            p.lstat().st_blocks * 512 for d in self.dirs for p in d.iterdir() if p.is_file()
        )
        blocks, free = TOTAL // KIB, max(0, TOTAL - used) // KIB
        return os.statvfs_result((KIB, KIB, blocks, free, free, 0, 0, 0, 0, 255))


pytestmark = pytest.mark.usefixtures("completed")


def fill(directory: Path, count: int, size: int = 64 * KIB, prefix: str = "c") -> list[str]:
    """``count`` files, the first the oldest (mtime 1, 2, ...)."""
    names = []
    for i in range(count):
        path = directory / f"{prefix}{i:02d}"
        path.write_bytes(os.urandom(size))
        os.utime(path, (i + 1, i + 1))
        names.append(path.name)
    return names


def deleted(run: list[Event]) -> list[FileDeleted]:
    return [e for e in run if isinstance(e, FileDeleted)]


def space_pass(
    spool: Path, disk: FakeDisk, limit: str, *, dry_run: bool = False
) -> tuple[SpaceReport, list[Event]]:
    events: list[Event] = []
    parsed = min_free(limit)
    assert isinstance(parsed, MinFree)
    report = delete_for_space(
        spool / "completed",
        min_free=parsed,
        fs=SpoolFS(dry_run=dry_run),
        bus=EventBus([events.append]),
        journal=None,
        statvfs=disk,
    )
    assert report is not None
    return report, events


def left(spool: Path) -> list[str]:
    return sorted(p.name for p in (spool / "completed").iterdir())


def test_min_free_deletes_oldest_first_until_watermark(spool: Path) -> None:
    names = fill(spool / "completed", 12)  # 768 KiB of 1 MiB used: 256 KiB free
    disk = FakeDisk(spool / "completed", spool / "new")
    report, events = space_pass(spool, disk, "512KiB")
    assert left(spool) == names[4:]  # 4 x 64 KiB freed: exactly 512 KiB free
    assert [e.path.name for e in deleted(events)] == names[:4]
    assert report.space.free == 512 * KIB
    assert report.deleted == 4
    assert not report.short


def test_min_free_percent_of_total(spool: Path) -> None:
    names = fill(spool / "completed", 12)
    report, _ = space_pass(spool, FakeDisk(spool / "completed"), "75%")  # 768 KiB free wanted
    assert left(spool) == names[8:]
    assert report.watermark == 768 * KIB


def test_min_free_does_nothing_when_there_is_room(spool: Path) -> None:
    names = fill(spool / "completed", 2)
    report, events = space_pass(spool, FakeDisk(spool / "completed"), "10%")
    assert left(spool) == names
    assert events == []
    assert report.deleted == 0


def test_min_free_skips_multiply_linked_files(spool: Path, tmp_path: Path) -> None:
    names = fill(spool / "completed", 12)
    # The oldest has a second link (the producer keeps it): deleting it frees nothing.
    os.link(spool / "completed" / names[0], tmp_path / "producer-copy")
    disk = FakeDisk(spool / "completed")
    space_pass(spool, disk, "512KiB")
    assert left(spool) == [names[0], *names[5:]]


def test_min_free_dry_run_estimates_without_deleting(spool: Path) -> None:
    names = fill(spool / "completed", 12)
    report, events = space_pass(spool, FakeDisk(spool / "completed"), "512KiB", dry_run=True)
    assert left(spool) == names
    assert {e.path.name: e.dry_run for e in deleted(events)} == dict.fromkeys(names[:4], True)
    assert not report.short


def test_min_free_never_opens_new(spool: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fill(spool / "completed", 2)
    fill(spool / "new", 12, prefix="n")  # new/ fills the disk
    opened: list[str] = []
    real_open, real_scandir = os.open, os.scandir

    def spy_open(path: object, *args: object, **kw: object) -> int:
        opened.append(str(path))
        return real_open(path, *args, **kw)  # type: ignore[arg-type]

    def spy_scandir(path: object = ".") -> object:
        opened.append(str(path))
        return real_scandir(path)  # type: ignore[call-overload]

    monkeypatch.setattr(os, "open", spy_open)
    monkeypatch.setattr(os, "scandir", spy_scandir)
    space_pass(spool, FakeDisk(spool / "completed", spool / "new"), "512KiB")
    assert not any(path.endswith("/new") or "/new/" in path for path in opened), opened
    assert sorted(p.name for p in (spool / "new").iterdir()) == [f"n{i:02d}" for i in range(12)]


def test_min_free_reports_new_keeps_disk_full(spool: Path) -> None:
    fill(spool / "completed", 2)
    fill(spool / "new", 12, prefix="n")
    report, events = space_pass(spool, FakeDisk(spool / "completed", spool / "new"), "512KiB")
    assert left(spool) == []  # completed/ emptied first
    assert len(deleted(events)) == 2
    assert report.short
    assert report.space.free == 256 * KIB


def test_min_free_verify_before_delete_keeps_a_mismatched_object(spool: Path) -> None:
    names = fill(spool / "completed", 12, size=64 * KIB)
    journal = Journal.open(spool)
    try:
        journal.complete([Completion(n, n, f"k/{n}", 64 * KIB, None, None) for n in names])

        def head(key: str) -> ObjectInfo | None:
            return None if key == f"k/{names[0]}" else ObjectInfo(key, 64 * KIB)

        events: list[Event] = []
        delete_for_space(
            spool / "completed",
            min_free=MinFree(bytes=512 * KIB),
            fs=SpoolFS(),
            bus=EventBus([events.append]),
            journal=journal,
            head=head,
            statvfs=FakeDisk(spool / "completed"),
        )
    finally:
        journal.close()
    assert left(spool) == [names[0], *names[5:]]  # the oldest kept: its object is gone
    (failed,) = [e for e in events if isinstance(e, DeleteFailed)]
    assert "no longer exists" in failed.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [("15%", MinFree(percent=15.0)), ("2GiB", MinFree(bytes=2 << 30)),
     ("1.5G", MinFree(bytes=3 << 29)), (4096, MinFree(bytes=4096)), ("", None)],
)  # fmt: skip
def test_min_free_parses_sizes_and_percentages(text: object, expected: MinFree | None) -> None:
    assert min_free(text) == expected


@pytest.mark.parametrize("text", ["0%", "100%", "-5%", "lots", "x%"])
def test_min_free_rejects_bad_values(text: str) -> None:
    with pytest.raises(ValueError, match=r"percentage|size|number"):
        min_free(text)


def test_free_space_of_a_real_path_is_sane(tmp_path: Path) -> None:
    space = free_space(tmp_path)
    assert 0 <= space.free <= space.total
