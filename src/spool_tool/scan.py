"""Find eligible files in ``SPOOL_DIR/new`` without materialising the whole directory.

Entries are read with ``os.scandir`` and ``lstat`` (never following symlinks) and yielded
oldest-first within windows of ``window`` entries: a spool of a million files starts uploading
after the first window instead of after a full sort, and memory stays bounded. Across windows
the order is the directory's own.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from spool_tool.spoolfs import entry_kind, iter_entries

SCAN_WINDOW = 8192
# A file whose mtime is this far ahead of our clock is reported as being "in the future".
FUTURE_TOLERANCE_SECONDS = 2.0

SkipReporter = Callable[[Path, str, bool], None]
"""Called with (path, reason, is_warning) for entries that are not shipped."""
WindowReporter = Callable[[int, int, bool], None]
"""Called with (files, bytes, is_last) for each window of eligible files, before it is yielded."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """An eligible file as seen by ``lstat`` when scanned."""

    path: Path
    st: os.stat_result

    @property
    def name(self) -> str:
        return self.path.name


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
) -> Iterator[Candidate]:
    """Yield regular files in ``new_dir`` unmodified for ``hold_for_seconds``, oldest first
    within each window. Non-regular entries are reported to ``on_skip`` and never touched;
    ``on_window`` learns the size of each window (progress totals).

    ``new_dir`` is opened by the call itself: a directory that cannot be read raises
    ``OSError`` here, before anything is yielded, so the caller can report that spool alone."""
    return _windows(iter_entries(new_dir), hold_for_seconds, now, on_skip, on_window, window)


def future_mtime_reason(hold_for_seconds: float) -> str:
    """What happens to a file dated in the future, in words: with ``--hold-for`` 0 it is
    uploaded anyway; otherwise it waits until it is ``--hold-for`` past its mtime."""
    if hold_for_seconds == 0:
        return "modification time is in the future (check the clock); uploading it anyway"
    return "modification time is in the future (check the clock); waiting until it is old enough"


def _windows(
    entries: Iterator[tuple[os.DirEntry[str], os.stat_result]],
    hold_for_seconds: float,
    now: float,
    on_skip: SkipReporter | None,
    on_window: WindowReporter | None,
    window: int,
) -> Iterator[Candidate]:
    batch: list[Candidate] = []
    for entry, st in entries:
        path = Path(entry.path)
        if not stat.S_ISREG(st.st_mode):
            if on_skip is not None:
                on_skip(path, f"not a regular file ({entry_kind(st.st_mode)})", False)
            continue
        if st.st_mtime - now > FUTURE_TOLERANCE_SECONDS and on_skip is not None:
            on_skip(path, future_mtime_reason(hold_for_seconds), True)
        if not is_old_enough(st, hold_for_seconds, now):
            continue
        batch.append(Candidate(path, st))
        if len(batch) >= window:
            yield from _window(batch, on_window, last=False)
            batch = []
    yield from _window(batch, on_window, last=True)


def _window(
    batch: list[Candidate], on_window: WindowReporter | None, *, last: bool
) -> list[Candidate]:
    if on_window is not None:
        on_window(len(batch), sum(c.st.st_size for c in batch), last)
    return _oldest_first(batch)


def _oldest_first(batch: list[Candidate]) -> list[Candidate]:
    return sorted(batch, key=lambda c: (c.st.st_mtime_ns, c.path.name))
