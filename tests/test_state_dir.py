"""``--state-dir`` and ``--allow-network-state``: the journal and lock outside the spool, and
the refusal to keep a journal on a network or FUSE filesystem (found through an injected mount
table: these machines cannot mount NFS)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from spool_tool import statefs
from spool_tool.cli import main
from spool_tool.journal import Claim, Journal
from spool_tool.statefs import MountTable, state_dir_for
from tests.helpers import assert_one_line_error, make_files, run_cli, snapshot


def nfs_at(monkeypatch: pytest.MonkeyPatch, mount_point: Path) -> None:
    """The live mount table, as if ``mount_point`` were an NFS 4.1 (EFS) mount."""
    text = (
        "22 1 0:21 / / rw,relatime - ext4 /dev/sda1 rw\n"
        f"30 22 0:40 / {mount_point} rw,relatime - nfs4 fs-1.efs.amazonaws.com:/ rw,vers=4.1\n"
    )
    table = MountTable.parse(text)
    monkeypatch.setattr(statefs.MountTable, "read", classmethod(lambda cls, path="": table))


@pytest.mark.parametrize("compress", [[], ["--compress", "gzip"]], ids=["plain", "gzip"])
def test_state_dir_holds_journal_and_lock(
    spool_dir: Path, tmp_path: Path, compress: list[str]
) -> None:
    make_files(spool_dir / "new", 2)
    root = tmp_path / "state"  # does not exist yet: created with its subdirectory
    result = run_cli("--state-dir", root, *compress, spool_dir, "noop")
    assert result.returncode == 0, result.stderr
    assert not (spool_dir / ".spool_tool").exists()
    state = state_dir_for(spool_dir, root)
    assert state.parent == root
    assert (state / "journal.sqlite3").is_file()
    assert (state / "lock").is_file()
    assert (state / "tmp").is_dir() == bool(compress)  # compression temp files live there too
    assert sorted(os.listdir(spool_dir / "completed")) == ["f00000.dat", "f00001.dat"]


def test_a_symlinked_spool_path_shares_the_lock(spool_dir: Path, tmp_path: Path) -> None:
    make_files(spool_dir / "new", 1)
    link = tmp_path / "link"
    link.symlink_to(spool_dir)
    root = tmp_path / "state"
    assert state_dir_for(link, root) == state_dir_for(spool_dir, root)
    with Journal.open(link, state_dir_for(link, root)):
        result = run_cli("--state-dir", root, spool_dir, "noop")
    assert result.returncode == 0, result.stderr
    assert "held by another spool_tool process" in result.stderr
    assert os.listdir(spool_dir / "new") == ["f00000.dat"]


def test_relative_state_dir_is_made_absolute(
    spool_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_files(spool_dir / "new", 1)
    monkeypatch.chdir(tmp_path)
    assert main(["--state-dir", "st", str(spool_dir), "noop"]) == 0
    assert (state_dir_for(spool_dir, tmp_path / "st") / "journal.sqlite3").is_file()


def test_status_reads_claims_from_state_dir(spool_dir: Path, tmp_path: Path) -> None:
    make_files(spool_dir / "new", 1)
    root = tmp_path / "state"
    with Journal.open(spool_dir, state_dir_for(spool_dir, root)) as journal:
        journal.add_claims([Claim("f00000.dat", 1, 2, "k")])
    result = run_cli("--status", "--state-dir", root, "--log-format", "json", spool_dir)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["spools"][0]["claims_in_flight"] == 1
    result = run_cli("--status", "--log-format", "json", spool_dir)
    assert json.loads(result.stdout)["spools"][0]["claims_in_flight"] == 0


def test_state_dir_inside_new_is_refused(spool_dir: Path) -> None:
    make_files(spool_dir / "new", 1)
    before = snapshot(spool_dir)
    result = run_cli("--state-dir", spool_dir / "new" / "st", spool_dir, "noop")
    assert result.returncode == 2
    assert "is inside" in result.stderr
    assert_one_line_error(result.stderr)
    assert snapshot(spool_dir) == before


def test_state_dir_that_is_a_file_is_refused(spool_dir: Path, tmp_path: Path) -> None:
    """Issue 9 audit: it used to fail each spool alone ("cannot create state directory: Not a
    directory", exit 1). It is the option that is wrong: exit 2, before anything is touched."""
    make_files(spool_dir / "new", 1)
    (tmp_path / "state").write_bytes(b"a file")
    before = snapshot(spool_dir)
    result = run_cli("--state-dir", tmp_path / "state", spool_dir, "noop")
    assert result.returncode == 2, result.stderr
    assert "exists and is not a directory" in result.stderr
    assert_one_line_error(result.stderr)
    assert snapshot(spool_dir) == before


def test_network_state_refused_from_mount_table(
    spool_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make_files(spool_dir / "new", 1)
    nfs_at(monkeypatch, spool_dir)
    before = snapshot(spool_dir)
    assert main([str(spool_dir), "noop"]) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err)
    assert "nfs4" in err
    assert "--state-dir" in err
    assert snapshot(spool_dir) == before  # nothing touched, no .spool_tool created

    assert main(["--state-dir", str(tmp_path / "local"), str(spool_dir), "noop"]) == 0
    assert not (spool_dir / ".spool_tool").exists()
    assert os.listdir(spool_dir / "completed") == ["f00000.dat"]


def test_allow_network_state_runs_with_one_warning(
    spool_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    make_files(spool_dir / "new", 1)
    nfs_at(monkeypatch, spool_dir)
    assert main(["--allow-network-state", str(spool_dir), "noop"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "nfs4" in line]
    assert len(warnings) == 1
    assert "--allow-network-state" in warnings[0]
    assert (spool_dir / ".spool_tool" / "journal.sqlite3").is_file()
