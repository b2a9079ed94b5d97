"""What is waiting in a spool, for ``--status`` and the backlog gauges. Changes nothing on disk.

Definitions (SPEC section 7):

* ``files_waiting`` / ``bytes_waiting``: every regular file in ``new/`` (``lstat``, never
  following symlinks), eligible or not. Symlinks, directories, FIFOs and other special entries
  are not counted: they are never shipped.
* ``eligible_now``: those of them that the upload phase would pick now, by the same rule as
  ``scan.is_old_enough``.
* ``oldest_age_seconds``: age (``now`` minus mtime) of the oldest regular file in ``new/``;
  ``None`` when there is none, never negative (a file dated in the future counts as age 0).
* ``claims_in_flight``: claims in the journal (files a run has claimed but not yet moved to
  ``completed/``), read through ``Journal.read_only``: no lock, nothing created; 0 when the spool
  has no journal.
* ``files_excluded`` / ``bytes_excluded``: regular files in ``new/`` that ``--include`` /
  ``--exclude`` leave alone; not part of ``files_waiting`` (they never leave ``new/``).
* With ``--require-marker``, ready markers are not counted, and a file still waiting for its
  marker is waiting but not ``eligible_now``.
* ``completed_files`` / ``completed_bytes``: regular files in ``completed/``.
* ``exists``: the spool dir and its ``new/`` exist; when False every count is 0.

* ``error``: why the spool could not be measured (``new/`` or ``completed/`` exists but cannot
  be read: "SPOOL/new: cannot read the directory: Permission denied"; the journal is damaged);
  every count is then 0.

* With ``--recursive`` every count covers the tree below ``new/`` (and ``completed/``) to
  ``--max-depth``, as the scan and cleanup walk it; filters and markers judge the path
  relative to ``new/``.

Directories are streamed (``spoolfs.walk``): memory stays constant for a million
files. An entry that vanishes between ``readdir`` and ``lstat`` is simply not counted.
"""

from __future__ import annotations

import json
import math
import os
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spool_tool.display import display_name
from spool_tool.errors import FatalError
from spool_tool.journal import Journal
from spool_tool.scan import ScanOptions, is_old_enough
from spool_tool.spoolfs import COMPLETED, NEW

if TYPE_CHECKING:
    from rich.console import Console


@dataclass(frozen=True, slots=True)
class Backlog:
    spool_dir: str
    files_waiting: int = 0
    bytes_waiting: int = 0
    eligible_now: int = 0
    oldest_age_seconds: float | None = None
    claims_in_flight: int = 0
    completed_files: int = 0
    completed_bytes: int = 0
    exists: bool = True
    error: str | None = None
    files_excluded: int = 0
    bytes_excluded: int = 0

    @property
    def ok(self) -> bool:
        """The spool exists and could be measured."""
        return self.exists and self.error is None


def _is_dir(path: Path) -> bool:
    """The configured spool dir (and its ``new/``) may be a symlink, as ``scan`` allows."""
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except FileNotFoundError:
        return False
    except NotADirectoryError:
        return False


def _claims_in_flight(spool_dir: Path, state_dir: Path | None) -> int:
    """``FatalError`` when the journal is damaged."""
    journal = Journal.read_only(spool_dir, state_dir)
    if journal is None:
        return 0
    try:
        return len(journal.claims)
    finally:
        journal.close()


@dataclass(frozen=True, slots=True)
class BacklogQuery:
    """One spool to measure, with the settings of its job (``--status``)."""

    spool_dir: Path
    hold_for_seconds: float = 0.0
    options: ScanOptions = ScanOptions()  # noqa: RUF009 - frozen, shared safely
    state_dir: Path | None = None  # statefs.state_dir_for; None: SPOOL_DIR/.spool_tool

    def measure(self, now: float) -> Backlog:
        return measure_backlog(
            self.spool_dir,
            hold_for_seconds=self.hold_for_seconds,
            now=now,
            options=self.options,
            state_dir=self.state_dir,
        )


def measure_backlog(
    spool_dir: Path,
    *,
    hold_for_seconds: float,
    now: float,
    options: ScanOptions = ScanOptions(),  # noqa: B008 - frozen, shared safely
    state_dir: Path | None = None,
) -> Backlog:
    """Measure one spool's backlog as of ``now`` (Unix seconds). Read-only; a directory that
    cannot be read gives a ``Backlog`` whose ``error`` says so."""
    new_dir = spool_dir / NEW
    if not (_is_dir(spool_dir) and _is_dir(new_dir)):
        return Backlog(str(spool_dir), exists=False)
    try:
        return _measure(spool_dir, hold_for_seconds, now, options, state_dir)
    except FatalError as exc:  # a damaged journal
        return Backlog(str(spool_dir), error=str(exc))
    except OSError as exc:
        where = exc.filename if exc.filename is not None else new_dir
        reason = f"{where}: cannot read the directory: {exc.strerror or exc}"
        return Backlog(str(spool_dir), error=reason)


def _measure(
    spool_dir: Path,
    hold_for_seconds: float,
    now: float,
    options: ScanOptions,
    state_dir: Path | None,
) -> Backlog:
    files = size = eligible = excluded = excluded_bytes = 0
    oldest_mtime = math.inf
    new_dir = spool_dir / NEW
    for relpath, st in options.walk(new_dir):
        if not stat.S_ISREG(st.st_mode):
            continue
        if options.exclusion_reason(relpath) is not None:
            excluded += 1
            excluded_bytes += st.st_size
            continue
        if options.is_marker(relpath):
            continue
        files += 1
        size += st.st_size
        if is_old_enough(st, hold_for_seconds, now) and options.is_ready(new_dir / relpath, st):
            eligible += 1
        oldest_mtime = min(oldest_mtime, st.st_mtime)

    completed_files = completed_bytes = 0
    completed_dir = spool_dir / COMPLETED
    if _is_dir(completed_dir):
        for _, st in options.walk(completed_dir):
            if stat.S_ISREG(st.st_mode):
                completed_files += 1
                completed_bytes += st.st_size

    return Backlog(
        spool_dir=str(spool_dir),
        files_waiting=files,
        bytes_waiting=size,
        eligible_now=eligible,
        oldest_age_seconds=None if files == 0 else max(0.0, now - oldest_mtime),
        claims_in_flight=_claims_in_flight(spool_dir, state_dir),
        completed_files=completed_files,
        completed_bytes=completed_bytes,
        exists=True,
        files_excluded=excluded,
        bytes_excluded=excluded_bytes,
    )


def backlog_dict(backlog: Backlog) -> dict[str, Any]:
    return {
        "spool_dir": display_name(backlog.spool_dir),
        "exists": backlog.exists,
        "error": None if backlog.error is None else display_name(backlog.error),
        "files_waiting": backlog.files_waiting,
        "bytes_waiting": backlog.bytes_waiting,
        "eligible_now": backlog.eligible_now,
        "oldest_age_seconds": backlog.oldest_age_seconds,
        "claims_in_flight": backlog.claims_in_flight,
        "completed_files": backlog.completed_files,
        "completed_bytes": backlog.completed_bytes,
        "files_excluded": backlog.files_excluded,
        "bytes_excluded": backlog.bytes_excluded,
    }


def to_json(backlogs: Iterable[Backlog], *, generated_at: float | None = None) -> str:
    """One JSON document: ``{"spools": [...], "generated_at": <unix seconds>}``; ages in
    seconds (``null`` when ``new/`` holds no regular file)."""
    document = {
        "spools": [backlog_dict(b) for b in backlogs],
        "generated_at": time.time() if generated_at is None else generated_at,
    }
    return json.dumps(document, ensure_ascii=False)


KIB = 1024
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def human_bytes(n: int) -> str:
    """``1536`` -> ``"1.5 KiB"``; bytes below 1 KiB stay exact."""
    value = float(n)
    for unit in _UNITS:
        if value < KIB or unit == _UNITS[-1]:
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= KIB
    raise AssertionError("unreachable")  # pragma: no cover


def human_age(seconds: float | None) -> str:
    """``None`` -> ``"-"``; ``75`` -> ``"1m 15s"``; ``90000`` -> ``"1d 1h"``."""
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:  # noqa: PLR2004 - one minute
        return f"{seconds:.1f}s" if seconds < 10 else f"{s}s"  # noqa: PLR2004
    minutes, s = divmod(s, 60)
    if minutes < 60:  # noqa: PLR2004 - one hour
        return f"{minutes}m {s:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:  # noqa: PLR2004 - one day
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def _bytes_cell(n: int) -> str:
    """Human and exact: ``5.0 MiB`` over ``(5242880)``."""
    return f"{n}" if n < KIB else f"{human_bytes(n)}\n({n})"


def render_table(backlogs: Iterable[Backlog], console: Console) -> None:
    """Print one row per spool on ``console`` (a rich Console)."""
    from rich import box  # noqa: PLC0415 - rich is only needed for the table
    from rich.table import Table  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415

    table = Table(title="Spool backlog", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("Spool dir", overflow="fold", min_width=10)
    # Two-line headers: the numbers are narrow, and long headers would squeeze every column.
    for header in (
        "Files\nwaiting",
        "Bytes\nwaiting",
        "Eligible\nnow",
        "Oldest\nage",
        "Claims in\nflight",
        "Completed\nfiles",
        "Completed\nbytes",
        "Excluded\nfiles",
    ):
        table.add_column(header, justify="right", overflow="fold")
    for b in backlogs:
        name = Text(display_name(b.spool_dir))  # Text: a path is never parsed as rich markup
        if not b.ok:
            state = "missing" if b.error is None else "unreadable"
            table.add_row(name, Text(state, style="red"), *["-"] * 7)
            continue
        table.add_row(
            name,
            str(b.files_waiting),
            _bytes_cell(b.bytes_waiting),
            str(b.eligible_now),
            human_age(b.oldest_age_seconds),
            str(b.claims_in_flight),
            str(b.completed_files),
            _bytes_cell(b.completed_bytes),
            str(b.files_excluded),
        )
    console.print(table)
