"""Find eligible files in ``SPOOL_DIR/new`` without materialising the whole directory.

Entries are read with ``os.scandir`` and ``lstat`` (never following symlinks) and yielded
oldest-first within windows of ``window`` entries: a spool of a million files starts uploading
after the first window instead of after a full sort, and memory stays bounded. Across windows
the order is the directory's own. With ``--recursive`` the walk (``spoolfs.walk``) streams the
tree into the same windows: a window may hold files of several directories.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from spool_tool.filters import PathFilter
from spool_tool.spoolfs import WalkError, entry_kind, subdirectories, walk

SCAN_WINDOW = 8192
# A file whose mtime is this far ahead of our clock is reported as being "in the future".
FUTURE_TOLERANCE_SECONDS = 2.0

SkipReporter = Callable[[Path, str, bool], None]
"""Called with (path, reason, is_warning) for entries that are not shipped."""
WindowReporter = Callable[[int, int, bool], None]
"""Called with (files, bytes, is_last) for each window of eligible files, before it is yielded."""


@dataclass(frozen=True, slots=True)
class ScanOptions:
    """Which regular files of ``new/`` a job may touch (``--include``/``--exclude``) and when
    one is ready (``--require-marker``). Paths are relative to ``new/``."""

    path_filter: PathFilter = field(default_factory=PathFilter)
    marker_suffix: str | None = None
    max_depth: int | None = 1  # 1: new/ alone; --recursive: --max-depth, None for no limit

    def walk(
        self, directory: Path | int, on_error: WalkError | None = None
    ) -> Iterator[tuple[str, os.stat_result]]:
        """``spoolfs.walk`` of ``new/`` (or ``completed/``) to this job's depth; subtrees an
        ``--exclude`` matches whole are not entered."""
        return walk(directory, max_depth=self.max_depth, skip_dir=self._skip, on_error=on_error)

    def subdirectories(self, directory: Path, start: str = "") -> list[tuple[str, float]]:
        """The subdirectories ``walk`` enters (below ``start``), with their mtimes
        (``spoolfs.subdirectories``)."""
        return subdirectories(directory, max_depth=self.max_depth, skip_dir=self._skip, start=start)

    @property
    def _skip(self) -> Callable[[str], bool] | None:
        return self.path_filter.excludes_dir if self.path_filter.excludes else None

    def exclusion_reason(self, relpath: str) -> str | None:
        """Why the file is left alone (never opened, moved or deleted), or None. A marker is
        judged by its data file's path."""
        if self.path_filter.selects_everything:
            return None
        return self.path_filter.exclusion_reason(self.data_path(relpath))

    def is_marker(self, relpath: str) -> bool:
        suffix = self.marker_suffix
        return suffix is not None and relpath.endswith(suffix) and relpath != suffix

    def data_path(self, relpath: str) -> str:
        """The data file a marker belongs to (``x.json.done`` -> ``x.json``); else ``relpath``."""
        if self.marker_suffix is not None and self.is_marker(relpath):
            return relpath[: -len(self.marker_suffix)]
        return relpath

    def is_ready(self, path: Path, st: os.stat_result) -> bool:
        """Without ``--require-marker`` every file is; with it, ``NAME`` once ``NAME+SUFFIX`` is
        a regular file beside it (a symlink does not count). A file with more than one link
        is too: a killed run may have linked it into ``completed/`` already (the move finishes
        it, or re-checks the marker)."""
        if self.marker_suffix is None or st.st_nlink > 1:
            return True
        return has_marker(path, self.marker_suffix)


def has_marker(path: Path, suffix: str) -> bool:
    try:
        marker = os.stat(f"{path}{suffix}", follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return False
    return stat.S_ISREG(marker.st_mode)


@dataclass(frozen=True, slots=True)
class Candidate:
    """An eligible file as seen by ``lstat`` when scanned; ``relpath`` is its path relative to
    ``new/`` (``/``-separated; the name alone for a file directly in ``new/``)."""

    path: Path
    st: os.stat_result
    relpath: str = ""

    def __post_init__(self) -> None:
        if not self.relpath:
            object.__setattr__(self, "relpath", self.path.name)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def reldir(self) -> str:
        """The directory part of ``relpath`` (``""`` directly in ``new/``)."""
        return self.relpath.rpartition("/")[0]


def is_old_enough(st: os.stat_result, hold_for_seconds: float, now: float) -> bool:
    """Unmodified for ``hold_for_seconds``. With ``hold_for`` 0 every regular file is eligible,
    even one whose mtime is in the future; otherwise a future mtime waits (the caller is warned
    either way by ``iter_eligible``)."""
    if hold_for_seconds == 0:
        return True
    age = now - st.st_mtime
    return age >= hold_for_seconds


def iter_eligible(
    new_dir: Path,
    *,
    hold_for_seconds: float,
    now: float,
    on_skip: SkipReporter | None = None,
    on_window: WindowReporter | None = None,
    window: int = SCAN_WINDOW,
    options: ScanOptions = ScanOptions(),
) -> Iterator[Candidate]:
    """Yield regular files in ``new_dir`` unmodified for ``hold_for_seconds``, oldest first
    within each window. Non-regular entries are reported to ``on_skip`` and never touched;
    ``on_window`` learns the size of each window (progress totals). Files ``options`` excludes,
    ready markers and files still waiting for theirs are reported at debug level only.

    ``new_dir`` is opened by the call itself: a directory that cannot be read raises
    ``OSError`` here, before anything is yielded, so the caller can report that spool alone.
    A subdirectory that cannot be entered (``--recursive``) is reported to ``on_skip``."""

    def unreadable(relpath: str, exc: OSError) -> None:
        if on_skip is None:
            return
        if exc.errno == errno.ENOTDIR:  # swapped for a symlink (or a file) since it was listed
            on_skip(new_dir / relpath, "no longer a directory (symlinks are not followed)", False)
        else:
            on_skip(new_dir / relpath, f"cannot read the directory: {exc.strerror}", True)

    entries = options.walk(new_dir, unreadable)
    return _windows(new_dir, entries, hold_for_seconds, now, on_skip, on_window, window, options)


def future_mtime_reason(hold_for_seconds: float) -> str:
    """What happens to a file dated in the future, in words: with ``--hold-for`` 0 it is
    uploaded anyway; otherwise it waits until it is ``--hold-for`` past its mtime."""
    if hold_for_seconds == 0:
        return "modification time is in the future (check the clock); uploading it anyway"
    return "modification time is in the future (check the clock); waiting until it is old enough"


def _windows(
    new_dir: Path,
    entries: Iterator[tuple[str, os.stat_result]],
    hold_for_seconds: float,
    now: float,
    on_skip: SkipReporter | None,
    on_window: WindowReporter | None,
    window: int,
    options: ScanOptions,
) -> Iterator[Candidate]:
    batch: list[Candidate] = []
    for relpath, st in entries:
        path = new_dir / relpath
        passed = _not_a_candidate(options, relpath, path, st)
        if passed is not None:
            if on_skip is not None:
                on_skip(path, passed, False)
            continue
        if st.st_mtime - now > FUTURE_TOLERANCE_SECONDS and on_skip is not None:
            on_skip(path, future_mtime_reason(hold_for_seconds), True)
        if not is_old_enough(st, hold_for_seconds, now):
            continue
        batch.append(Candidate(path, st, relpath))
        if len(batch) >= window:
            yield from _window(batch, on_window, last=False)
            batch = []
    yield from _window(batch, on_window, last=True)


def _not_a_candidate(
    options: ScanOptions, relpath: str, path: Path, st: os.stat_result
) -> str | None:
    """Why an entry is left alone before any time check (excluded, not a regular file, a ready
    marker, waiting for its marker), or None."""
    excluded = options.exclusion_reason(relpath)
    if excluded is not None:
        return excluded
    if not stat.S_ISREG(st.st_mode):
        return f"not a regular file ({entry_kind(st.st_mode)})"
    if options.marker_suffix is None:
        return None
    if options.is_marker(relpath):
        return "a ready marker (never uploaded)"
    if not options.is_ready(path, st):
        return f"waiting for its marker {path.name}{options.marker_suffix}"
    return None


def _window(
    batch: list[Candidate], on_window: WindowReporter | None, *, last: bool
) -> list[Candidate]:
    if on_window is not None:
        on_window(len(batch), sum(c.st.st_size for c in batch), last)
    return _oldest_first(batch)


def _oldest_first(batch: list[Candidate]) -> list[Candidate]:
    return sorted(batch, key=lambda c: (c.st.st_mtime_ns, c.relpath))
