"""The cleanup phase: delete regular files in ``completed/`` older than ``--delete-after``.

Never follows symlinks, never recurses, never touches anything outside ``completed/``:
entries are unlinked by name relative to an open descriptor of ``completed/`` itself.
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

from spool_tool.crashpoints import crash_point
from spool_tool.events import DeleteFailed, EventBus, FileDeleted

if TYPE_CHECKING:
    from pathlib import Path

    from spool_tool.journal import Journal
    from spool_tool.spoolfs import SpoolFS


def is_expired(st: os.stat_result, delete_after_seconds: float, now: float) -> bool:
    if delete_after_seconds == 0:
        return True
    return now - st.st_mtime > delete_after_seconds


def delete_expired(
    completed: Path,
    *,
    delete_after_seconds: float,
    now: float,
    fs: SpoolFS,
    bus: EventBus,
    journal: Journal | None,
) -> None:
    try:
        dir_fd = os.open(completed, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    deleted: list[str] = []
    try:
        with os.scandir(dir_fd) as entries:
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if not stat.S_ISREG(st.st_mode) or not is_expired(st, delete_after_seconds, now):
                    continue
                path = completed / entry.name
                try:
                    fs.delete(dir_fd, entry.name)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    bus.emit(DeleteFailed(path, f"{path}: cannot delete: {exc.strerror}"))
                    continue
                deleted.append(entry.name)
                bus.emit(FileDeleted(path, dry_run=fs.dry_run))
                crash_point("mid_cleanup")
    finally:
        os.close(dir_fd)
        if journal is not None and not fs.dry_run:
            journal.forget_completed(deleted)
