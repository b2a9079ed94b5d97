"""Unit tests for ``spool_tool.cleanup.delete_expired``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from spool_tool.cleanup import delete_expired, is_expired
from spool_tool.events import DeleteFailed, Event, EventBus, FileDeleted
from spool_tool.journal import Completion, Journal, LedgerEntry
from spool_tool.runstate import RunState
from spool_tool.spoolfs import SpoolFS

NOW = 1_700_000_000
MINUTE = 60
N = 10  # --delete-after in minutes


pytestmark = pytest.mark.usefixtures("completed")


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.state = RunState()
        self.bus = EventBus([self.state, self.events.append])

    def deleted(self) -> dict[str, bool]:
        return {e.path.name: e.dry_run for e in self.events if isinstance(e, FileDeleted)}


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


def make(directory: Path, name: str, age_minutes: float, data: bytes = b"x") -> Path:
    path = directory / name
    path.write_bytes(data)
    age(path, age_minutes)
    return path


def age(path: Path, age_minutes: float) -> None:
    mtime_ns = (NOW - round(age_minutes * MINUTE)) * 10**9
    os.utime(path, ns=(mtime_ns, mtime_ns), follow_symlinks=False)


def run(
    completed: Path,
    rec: Recorder,
    *,
    minutes: float = N,
    dry_run: bool = False,
    journal: Journal | None = None,
) -> None:
    delete_expired(
        completed,
        delete_after_seconds=minutes * MINUTE,
        now=NOW,
        fs=SpoolFS(dry_run=dry_run),
        bus=rec.bus,
        journal=journal,
    )


def tree(root: Path) -> dict[str, bytes | str | None]:
    out: dict[str, bytes | str | None] = {}
    for d, ds, fs in os.walk(root):
        for n in ds + fs:
            p = Path(d, n)
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "-> " + os.readlink(p)
            elif p.is_file():
                out[rel] = p.read_bytes()
            else:
                out[rel] = None
    return out


def test_deletes_older_keeps_younger(completed: Path, rec: Recorder) -> None:
    make(completed, "old", N + 1)
    make(completed, "ancient", 10_000)
    make(completed, "young", N - 1)
    make(completed, "fresh", 0)
    run(completed, rec)
    assert sorted(os.listdir(completed)) == ["fresh", "young"]
    assert rec.deleted() == {"old": False, "ancient": False}
    assert rec.state.end_cycle().deleted == 2
    assert rec.state.end_cycle().ok


def test_exactly_at_the_limit_is_kept(completed: Path, rec: Recorder) -> None:
    make(completed, "edge", N)
    run(completed, rec)
    assert os.listdir(completed) == ["edge"]


def test_is_expired_zero_means_everything() -> None:
    st = os.stat_result((0o100644, 0, 0, 1, 0, 0, 0, NOW + 3600, NOW + 3600, NOW + 3600))
    assert is_expired(st, 0, NOW)  # even a future mtime
    assert not is_expired(st, 60, NOW)


def test_delete_after_zero_deletes_every_regular_file(
    completed: Path, rec: Recorder, tmp_path: Path
) -> None:
    for n, a in (("a", 0), ("b", 1), ("c", 10_000), ("d", -60)):
        make(completed, n, a)
    target = make(tmp_path, "target", 1000)
    os.symlink(target, completed / "link")
    (completed / "sub").mkdir()
    run(completed, rec, minutes=0)
    assert sorted(os.listdir(completed)) == ["link", "sub"]
    assert set(rec.deleted()) == {"a", "b", "c", "d"}
    assert target.read_bytes() == b"x"


def test_symlinks_are_left_and_their_targets_untouched(
    spool: Path, completed: Path, rec: Recorder
) -> None:
    new_file = make(spool / "new", "pending.csv", 1000, b"not uploaded yet")
    os.symlink(new_file, completed / "pending.csv")
    os.symlink("../new/pending.csv", completed / "relative")
    os.symlink(spool / "new", completed / "newdir")
    os.symlink(completed / "nowhere", completed / "dangling")
    for link in ("pending.csv", "relative", "newdir", "dangling"):
        age(completed / link, 1000)
    before = tree(spool)
    run(completed, rec)
    run(completed, rec, minutes=0)
    assert tree(spool) == before
    assert new_file.read_bytes() == b"not uploaded yet"
    assert rec.events == []


def test_subdirectories_are_not_entered(completed: Path, rec: Recorder) -> None:
    sub = completed / "sub"
    sub.mkdir()
    make(sub, "inner", 1000)
    nested = sub / "deeper"
    nested.mkdir()
    make(nested, "innermost", 1000)
    age(nested, 1000)
    age(sub, 1000)
    make(completed, "top", 1000)
    run(completed, rec, minutes=0)
    assert os.listdir(completed) == ["sub"]
    assert (sub / "inner").read_bytes() == b"x"
    assert (nested / "innermost").read_bytes() == b"x"
    assert rec.deleted() == {"top": False}


def test_new_and_state_dir_are_untouched(spool: Path, completed: Path, rec: Recorder) -> None:
    make(spool / "new", "old-in-new", 1000)
    (spool / ".spool_tool").mkdir()
    make(spool / ".spool_tool", "old-state", 1000)
    make(spool, "beside", 1000)
    make(completed, "gone", 1000)
    run(completed, rec, minutes=0)
    assert (spool / "new" / "old-in-new").exists()
    assert (spool / ".spool_tool" / "old-state").exists()
    assert (spool / "beside").exists()
    assert not (completed / "gone").exists()


def test_dry_run_deletes_nothing_and_says_what_it_would(
    spool: Path, completed: Path, rec: Recorder
) -> None:
    make(completed, "old", N + 1)
    make(completed, "young", N - 1)
    before = tree(spool)
    run(completed, rec, dry_run=True)
    assert tree(spool) == before
    assert rec.deleted() == {"old": True}
    assert rec.state.end_cycle().deleted == 0  # a dry run is not counted as a deletion


def test_missing_completed_directory_is_a_no_op(spool: Path, rec: Recorder) -> None:
    run(spool / "no-such-dir", rec, minutes=0)
    assert rec.events == []


def test_delete_failure_is_reported_and_others_go_on(
    completed: Path, rec: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in ("a", "b", "c"):
        make(completed, n, 1000)

    def flaky_delete(self: SpoolFS, directory_fd: int, name: str) -> None:
        if name == "b":
            raise PermissionError(13, "Permission denied")
        os.unlink(name, dir_fd=directory_fd)

    monkeypatch.setattr(SpoolFS, "delete", flaky_delete)
    run(completed, rec)
    assert os.listdir(completed) == ["b"]
    assert set(rec.deleted()) == {"a", "c"}
    failed = [e for e in rec.events if isinstance(e, DeleteFailed)]
    assert len(failed) == 1
    assert failed[0].path == completed / "b"
    assert "Permission denied" in failed[0].message
    assert rec.state.end_cycle().delete_failed == 1
    assert not rec.state.end_cycle().ok


def ledger(journal: Journal, *names: str) -> None:
    journal.complete(
        Completion(n, n, f"k/{n.encode(errors='replace').decode()}", 1, None, None) for n in names
    )


def test_ledger_rows_of_deleted_files_are_forgotten(
    completed: Path, rec: Recorder, journal: Journal
) -> None:
    make(completed, "old", N + 1)
    make(completed, "young", N - 1)
    ledger(journal, "old", "young")
    run(completed, rec, journal=journal)
    assert journal.ledger_entry("old") is None
    assert journal.ledger_entry("young") == LedgerEntry("k/young", 1, None, None)


def test_ledger_forgotten_for_undecodable_names(
    completed: Path, rec: Recorder, journal: Journal
) -> None:
    bad = os.fsdecode(b"bad\xfe")
    make(completed, bad, 1000)
    ledger(journal, bad)
    run(completed, rec, journal=journal)
    assert os.listdir(completed) == []
    assert journal.ledger_entry(bad) is None


def test_dry_run_keeps_ledger_rows(completed: Path, rec: Recorder, journal: Journal) -> None:
    make(completed, "old", N + 1)
    ledger(journal, "old")
    run(completed, rec, journal=journal, dry_run=True)
    assert (completed / "old").exists()
    assert journal.ledger_entry("old") == LedgerEntry("k/old", 1, None, None)
