"""Disk-pressure retention (``--min-free``): delete the oldest completed files while the
filesystem holding ``completed/`` has less free space than the watermark.

Only ``completed/`` is opened, by descriptor, as ``cleanup.delete_expired`` does, and every
delete goes through the same ``cleanup._Deleter`` (dry run, events, the journal's ledger,
``--verify-before-delete``). ``new/`` is only ever *measured*, read-only, to say when it alone
keeps the disk under the watermark: its files are not uploaded yet, so no watermark deletes them.

Free space is ``f_bavail * f_frsize``: what an unprivileged writer (the producer) can still use,
as ``df`` shows it. ``statvfs`` is injected so unit tests can fake a filesystem.
"""

from __future__ import annotations

import heapq
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from spool_tool.cleanup import Head, _Deleter, _mismatch, _open_dir
from spool_tool.events import DeleteFailed
from spool_tool.scan import SCAN_WINDOW, ScanOptions

if TYPE_CHECKING:
    from pathlib import Path

    from spool_tool.config import MinFree
    from spool_tool.events import EventBus
    from spool_tool.journal import Journal
    from spool_tool.spoolfs import SpoolFS

StatVFS = Callable[["int | Path"], os.statvfs_result]
# A pass over completed/ takes the oldest SCAN_WINDOW files (the scan's window: memory stays
# bounded for any directory size); another pass follows only when all of them were deleted
# and the disk is still short.


@dataclass(frozen=True, slots=True)
class FreeSpace:
    free: int
    total: int


@dataclass(frozen=True, slots=True)
class SpaceReport:
    """The filesystem after the pass; ``short``: still under the watermark with nothing left
    in ``completed/`` that could be deleted (``new/`` alone fills the disk)."""

    space: FreeSpace
    watermark: int
    deleted: int = 0
    short: bool = False


def free_space(where: int | Path, statvfs: StatVFS = os.statvfs) -> FreeSpace:
    """The filesystem holding ``where`` (a descriptor or a path)."""
    result = statvfs(where)
    return FreeSpace(result.f_bavail * result.f_frsize, result.f_blocks * result.f_frsize)


def _oldest(dir_fd: int, limit: int, options: ScanOptions) -> list[tuple[int, str, int]]:
    """Up to ``limit`` regular files of ``completed/`` (with ``--recursive``, of its tree) as
    (mtime_ns, path relative to it, bytes on disk), oldest first (the mtime of a completed
    file is its completion time). A file with other hard links frees nothing when unlinked
    here, so it is left alone; so is one ``--exclude`` names."""

    entries = (
        (st.st_mtime_ns, relpath, st.st_blocks * 512)
        for relpath, st in options.walk(dir_fd)
        if stat.S_ISREG(st.st_mode)
        and st.st_nlink == 1
        and options.exclusion_reason(relpath) is None
    )
    return heapq.nsmallest(limit, entries)


def delete_for_space(
    completed: Path,
    *,
    min_free: MinFree,
    fs: SpoolFS,
    bus: EventBus,
    journal: Journal | None,
    head: Head | None = None,
    statvfs: StatVFS = os.statvfs,
    options: ScanOptions = ScanOptions(),  # noqa: B008 - frozen, shared safely
) -> SpaceReport | None:
    """Delete the oldest completed files until free space reaches ``min_free``'s watermark.

    A dry run deletes nothing, so it counts each file's blocks as freed instead of measuring
    again. Returns None when ``completed/`` cannot be opened (reported by ``_open_dir``).
    """
    dir_fd = _open_dir(completed, bus)
    if dir_fd is None:
        return None
    deleter = _Deleter(completed, dir_fd, fs, bus, journal)
    try:
        space = free_space(dir_fd, statvfs)
        mark = min_free.watermark(space.total)
        freed_in_dry_run = 0
        while space.free + freed_in_dry_run < mark:
            window = _oldest(dir_fd, SCAN_WINDOW, options)
            kept = 0
            for _, name, blocks in window:
                if space.free + freed_in_dry_run >= mark:
                    break
                if not _verified(name, completed, bus, journal, head):
                    kept += 1
                    continue
                if deleter.delete(name):
                    freed_in_dry_run += blocks if fs.dry_run else 0
                space = free_space(dir_fd, statvfs)
            else:
                if len(window) < SCAN_WINDOW or kept == len(window) or fs.dry_run:
                    short = space.free + freed_in_dry_run < mark
                    return SpaceReport(space, mark, len(deleter.deleted), short)
        return SpaceReport(space, mark, len(deleter.deleted))
    finally:
        deleter.finish()


def _verified(
    name: str, completed: Path, bus: EventBus, journal: Journal | None, head: Head | None
) -> bool:
    """``--verify-before-delete``: the object still matches the ledger (else reported, kept)."""
    if head is None or journal is None:
        return True
    problem = _mismatch(journal.ledger_entry(name), head)
    if problem is None:
        return True
    path = completed / name
    bus.emit(DeleteFailed(path, f"{path}: kept, {problem} (--verify-before-delete)"))
    return False
