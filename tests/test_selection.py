"""``--include`` / ``--exclude`` and ``--require-marker`` through the scan, cleanup, ``--status``
and the command: excluded files are never opened, moved or deleted; markers are never uploaded
and follow their file into ``completed/``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from spool_tool.backlog import measure_backlog
from spool_tool.cleanup import delete_expired
from spool_tool.events import Event, EventBus, FileDeleted
from spool_tool.filters import PathFilter
from spool_tool.runstate import RunState
from spool_tool.scan import ScanOptions, iter_eligible
from spool_tool.spoolfs import SpoolFS
from tests.helpers import assert_one_line_error, run_cli, snapshot

NOW = 1_700_000_000
NS = 10**9
TYPICAL = ScanOptions(PathFilter(excludes=("*.tmp", ".*")))


def make(directory: Path, name: str, age_seconds: float = 3600, data: bytes = b"x") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(data)
    mtime_ns = NOW * NS - round(age_seconds * NS)
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def scanned(new: Path, options: ScanOptions) -> tuple[list[str], dict[str, str]]:
    skipped: dict[str, str] = {}

    def on_skip(path: Path, reason: str, warning: bool) -> None:
        assert not warning
        skipped[path.name] = reason

    found = iter_eligible(new, hold_for_seconds=0, now=NOW, on_skip=on_skip, options=options)
    return sorted(c.name for c in found), skipped


# --- filters -----------------------------------------------------------------------------------


def test_excluded_files_are_not_candidates(tmp_path: Path) -> None:
    for name in ("x.tmp", ".x", "x.json"):
        make(tmp_path, name)
    found, skipped = scanned(tmp_path, TYPICAL)
    assert found == ["x.json"]
    assert skipped == {"x.tmp": "excluded by --exclude '*.tmp'", ".x": "excluded by --exclude '.*'"}


def test_include_only_json(tmp_path: Path) -> None:
    for name in ("a.json", "b.csv", "c.json.tmp"):
        make(tmp_path, name)
    options = ScanOptions(PathFilter(includes=("*.json",)))
    assert scanned(tmp_path, options)[0] == ["a.json"]


def test_excluded_files_in_completed_are_kept(tmp_path: Path) -> None:
    for name in ("old.json", "old.tmp", ".old"):
        make(tmp_path, name, age_seconds=10 * 3600)
    events: list[Event] = []
    delete_expired(
        tmp_path,
        delete_after_seconds=60,
        now=NOW,
        fs=SpoolFS(),
        bus=EventBus([RunState(), events.append]),
        journal=None,
        options=TYPICAL,
    )
    assert sorted(os.listdir(tmp_path)) == [".old", "old.tmp"]
    assert [e.path.name for e in events if isinstance(e, FileDeleted)] == ["old.json"]


def test_excluded_are_counted_apart(spool_dir: Path) -> None:
    new = spool_dir / "new"
    make(new, "a.json", data=b"12345")
    make(new, "b.tmp", data=b"123")
    make(new, ".c", data=b"1")
    b = measure_backlog(spool_dir, hold_for_seconds=0, now=NOW, options=TYPICAL)
    assert (b.files_waiting, b.bytes_waiting, b.eligible_now) == (1, 5, 1)
    assert (b.files_excluded, b.bytes_excluded) == (2, 4)


def test_excluded_fifo_is_never_opened_moved_or_deleted(spool_dir: Path) -> None:
    """A FIFO named x.tmp: opening it would block, so the run ending proves it never was."""
    new = spool_dir / "new"
    make(new, "x.json")
    os.mkfifo(new / "x.tmp")
    make(spool_dir / "completed", "old.tmp", age_seconds=10**6)
    result = run_cli(
        "--exclude", "*.tmp", "--exclude", ".*", "--delete-after", "0", spool_dir, "noop",
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(new)) == ["x.tmp"]
    assert sorted(os.listdir(spool_dir / "completed")) == ["old.tmp"]  # x.json: 0 min, deleted


def test_status_counts_excluded_files(spool_dir: Path) -> None:
    make(spool_dir / "new", "x.json")
    make(spool_dir / "new", "x.tmp")
    result = run_cli("--status", "--exclude", "*.tmp", "--log-format", "json", spool_dir)
    assert result.returncode == 0, result.stderr
    (spool,) = json.loads(result.stdout)["spools"]
    assert (spool["files_waiting"], spool["files_excluded"]) == (1, 1)


def test_exclude_from_config_file_and_environment(spool_dir: Path, tmp_path: Path) -> None:
    make(spool_dir / "new", "a.tmp")
    make(spool_dir / "new", "b.part")
    make(spool_dir / "new", "c.json")
    config = tmp_path / "c.toml"
    config.write_text(
        f'exclude = ["*.tmp"]\n[[spool]]\ndirs = ["{spool_dir}"]\ndestination = "noop"\n'
    )
    result = run_cli("--config", config, env={"SPOOL_TOOL_EXCLUDE": "*.part\n*.tmp"})
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(spool_dir / "new")) == ["a.tmp", "b.part"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--include", "[z-a]"], "invalid --include '[z-a]': not a valid gitignore pattern"),
        (["--exclude", "*.tmp", "--exclude", "!x"], "invalid --exclude '!x': '!' negation"),
        (["--require-marker", "a/b"], "invalid --require-marker 'a/b': must be a file name"),
        (
            ["--metadata", "MTime=1", "--preserve-mtime"],
            "--metadata mtime=... conflicts with --preserve-mtime",
        ),
    ],
)
def test_bad_selection_options_exit_2_and_touch_nothing(
    spool_dir: Path, args: list[str], message: str
) -> None:
    make(spool_dir / "new", "x.json")
    before = snapshot(spool_dir)
    result = run_cli(*args, spool_dir, "noop")
    assert result.returncode == 2
    assert message in result.stderr
    assert_one_line_error(result.stderr)
    assert snapshot(spool_dir) == before


def test_dry_run_lists_only_selected_ready_files_and_changes_nothing(spool_dir: Path) -> None:
    new = spool_dir / "new"
    for name in ("a.json", "b.json", "b.json.done", "c.tmp", "c.tmp.done"):
        make(new, name)
    before = snapshot(spool_dir)
    result = run_cli(
        "--dry-run", "--exclude", "*.tmp", "--require-marker", ".done", spool_dir, "noop"
    )
    assert result.returncode == 0, result.stderr
    assert "b.json" in result.stdout
    assert "a.json" not in result.stdout  # waits for its marker
    assert "c.tmp" not in result.stdout  # excluded
    assert ".done" not in result.stdout  # markers are never uploaded
    assert snapshot(spool_dir) == before
