"""The cleanup phase: delete regular files in ``completed/`` older than ``--delete-after``.

Never follows symlinks, never touches anything outside ``completed/``: entries are unlinked by
name relative to an open descriptor of ``completed/`` itself. Without ``--recursive`` it never
recurses; with it, it walks ``completed/`` as the scan walks ``new/`` (``spoolfs.walk``: each
subdirectory opened from its parent with ``O_NOFOLLOW``), unlinks relative to the file's own
directory, and then removes the subdirectories it emptied (never ``completed/`` itself, never
one that holds anything: ``rmdir`` refuses).
With ``--verify-before-delete`` each file's object is HEADed first (size and checksum against
the ledger) and the file is kept when the object is missing or no longer matches.
"""

from __future__ import annotations

import heapq
import logging
import os
import stat
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from spool_tool.crashpoints import crash_point
from spool_tool.errors import SpoolToolError
from spool_tool.events import DeleteFailed, EventBus, FileDeleted, SpoolSkipped
from spool_tool.scan import ScanOptions
from spool_tool.spoolfs import open_beneath

if TYPE_CHECKING:
    from pathlib import Path

    from spool_tool.destinations.base import ObjectInfo
    from spool_tool.journal import Journal, LedgerEntry
    from spool_tool.spoolfs import SpoolFS

log = logging.getLogger(__name__)

Head = Callable[[str], "ObjectInfo | None"]
VERIFY_CONCURRENCY = 16


def is_expired(st: os.stat_result, delete_after_seconds: float, now: float) -> bool:
    if delete_after_seconds == 0:
        return True
    return now - st.st_mtime > delete_after_seconds


def _iter_expired(
    dir_fd: int, delete_after_seconds: float, now: float, options: ScanOptions
) -> Iterator[str]:
    """Paths (relative to ``completed/``) of expired regular files, except those ``options``
    excludes (never deleted)."""
    for relpath, st in options.walk(dir_fd):
        if (
            stat.S_ISREG(st.st_mode)
            and is_expired(st, delete_after_seconds, now)
            and options.exclusion_reason(relpath) is None
        ):
            yield relpath


class _Deleter:
    def __init__(
        self, completed: Path, dir_fd: int, fs: SpoolFS, bus: EventBus, journal: Journal | None
    ) -> None:
        self.completed = completed
        self.dir_fd = dir_fd
        self.fs = fs
        self.bus = bus
        self.journal = journal
        self.deleted: list[str] = []
        self._emptied: set[str] = set()  # subdirectories (relative) a file was deleted from

    def delete(self, relpath: str) -> bool:
        """Delete (or, in a dry run, report) one file, by its path relative to ``completed/``
        (a file in a subdirectory is unlinked relative to that directory, reached without
        following a symlink); False when it was not deleted."""
        path = self.completed / relpath
        reldir, _, name = relpath.rpartition("/")
        try:
            self._unlink(reldir, name)
        except FileNotFoundError:
            return False
        except OSError as exc:
            self.bus.emit(DeleteFailed(path, f"{path}: cannot delete: {exc.strerror}"))
            return False
        self.deleted.append(relpath)
        if reldir:
            self._emptied.add(reldir)
        self.bus.emit(FileDeleted(path, dry_run=self.fs.dry_run))
        crash_point("mid_cleanup")
        return True

    def _unlink(self, reldir: str, name: str) -> None:
        if not reldir:
            self.fs.delete(self.dir_fd, name)
            return
        fd = open_beneath(self.dir_fd, reldir)  # ENOTDIR: not a directory (a symlink) any more
        try:
            self.fs.delete(fd, name)
        finally:
            os.close(fd)

    def finish(self) -> None:
        try:
            if not self.fs.dry_run:
                self._remove_emptied()
        finally:
            os.close(self.dir_fd)
        if self.journal is not None and not self.fs.dry_run:
            self.journal.forget_completed(self.deleted)

    def _remove_emptied(self) -> None:
        """Remove the subdirectories this cleanup emptied, deepest first, and then their
        parents that this leaves empty; ``rmdir`` keeps any that still holds an entry."""
        pending = [(-d.count("/"), d) for d in self._emptied]
        heapq.heapify(pending)
        seen = set(self._emptied)
        while pending:
            _, reldir = heapq.heappop(pending)
            if self.fs.remove_dir_beneath(self.dir_fd, reldir):
                log.debug("removed the emptied directory %s", self.completed / reldir)
                parent = reldir.rpartition("/")[0]
                if parent and parent not in seen:
                    seen.add(parent)
                    heapq.heappush(pending, (-parent.count("/"), parent))


def _open_dir(completed: Path, bus: EventBus) -> int | None:
    """A descriptor of ``completed/``; None when it is missing or (reported) unreadable."""
    try:
        return os.open(completed, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        reason = f"{completed}: cannot read the directory: {exc.strerror}"
        bus.emit(SpoolSkipped(completed.parent, reason, failed=True))
        return None


def delete_expired(
    completed: Path,
    *,
    delete_after_seconds: float,
    now: float,
    fs: SpoolFS,
    bus: EventBus,
    journal: Journal | None,
    head: Head | None = None,
    options: ScanOptions = ScanOptions(),  # noqa: B008 - frozen, shared safely
) -> None:
    """Delete expired regular files in ``completed``. With ``head`` (``--verify-before-delete``)
    only those whose object S3 still holds, intact, as the journal's ledger recorded it; a
    ready marker has no object and goes unchecked. Files ``options`` excludes are kept."""
    dir_fd = _open_dir(completed, bus)
    if dir_fd is None:
        return
    deleter = _Deleter(completed, dir_fd, fs, bus, journal)
    expired = _iter_expired(dir_fd, delete_after_seconds, now, options)
    try:
        if head is None or journal is None:
            for name in expired:
                deleter.delete(name)
            return
        ledger = journal

        def verify(name: str) -> tuple[str, str | None]:
            if options.is_marker(name):
                return name, None  # markers are never uploaded: nothing to check
            return name, _mismatch(ledger.ledger_entry(name), head)

        with ThreadPoolExecutor(VERIFY_CONCURRENCY, thread_name_prefix="verify") as pool:
            for name, problem in pool.map(verify, expired):
                if problem is None:
                    deleter.delete(name)
                else:
                    path = completed / name
                    message = f"{path}: kept, {problem} (--verify-before-delete)"
                    bus.emit(DeleteFailed(path, message))
    finally:
        deleter.finish()


def _mismatch(entry: LedgerEntry | None, head: Head) -> str | None:
    """Why the file must be kept, or None when the object matches the ledger."""
    if entry is None:
        return "no record of its upload in the journal"
    try:
        info = head(entry.key)
    except SpoolToolError as exc:
        return f"cannot check the object: {exc}"
    if info is None:
        return f"object {entry.key} no longer exists"
    if info.size != entry.size:
        return f"object {entry.key} is {info.size} bytes, uploaded {entry.size}"
    if entry.checksum and info.checksum:
        if entry.checksum != info.checksum:
            return f"object {entry.key} checksum {info.checksum} != uploaded {entry.checksum}"
    elif entry.etag and info.etag and entry.etag != info.etag:
        return f"object {entry.key} ETag {info.etag} != uploaded {entry.etag}"
    return None
