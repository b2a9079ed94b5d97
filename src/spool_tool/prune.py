"""``--prune-empty-dirs``: remove empty directories in ``new/`` once they are older than the hold.

Runs after a spool's upload phase, with its lock held, so that directories the moves emptied go
too. A directory is removed when ``rmdir`` succeeds (it is empty) and its modification time, as
listed before any of its subdirectories was removed, is more than ``--hold-for`` in the past:
a producer that just made it, or just wrote into it, is left alone. ``new/`` itself never goes.

Never follows a symlink: each directory is reached from ``new/`` through descriptors opened with
``O_NOFOLLOW`` (``spoolfs.open_beneath``), and the listing only enters real directories. Only
directories a scan would enter (within ``--max-depth``, not excluded whole by ``--exclude``)
are considered. A producer creating a file in a directory at the moment it is removed loses
nothing: ``rmdir`` fails on a directory that is not empty, or the producer's ``open`` fails
(``ENOENT``) and it creates the directory again (README).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from spool_tool.scan import ScanOptions
    from spool_tool.spoolfs import SpoolFS

log = logging.getLogger(__name__)


def prune_empty_dirs(
    new: Path, *, older_than: float, fs: SpoolFS, options: ScanOptions
) -> list[str]:
    """Remove the empty directories below ``new`` whose mtime is before ``older_than`` (Unix
    seconds), deepest first; returns their paths relative to ``new``."""
    removed: list[str] = []
    for reldir, mtime in reversed(options.subdirectories(new)):
        if mtime >= older_than:
            continue
        if fs.remove_dir_beneath(new, reldir):  # False: not empty, gone, or not a directory
            removed.append(reldir)
            log.debug("removed the empty directory %s", new / reldir)
    return removed
