"""The command line end to end, against the noop destination (fast, no server)."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from spool_tool import __version__
from spool_tool.cli import main
from spool_tool.journal import Journal
from tests.helpers import assert_one_line_error, make_files, run_cli, snapshot


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    root = tmp_path / "spool"
    (root / "new").mkdir(parents=True)
    return root


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for option in (
        "--hold-for",
        "--delete-after",
        "--format",
        "--dry-run",
        "--no-upload",
        "--no-cleanup",
        "--endpoint-url",
        "--region",
        "--profile",
    ):
        assert option in out


def test_python_dash_m_works() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"spool_tool {__version__}"


@pytest.mark.parametrize(
    "args",
    [
        ["--format", "{nope}"],
        ["--format", "{fname"],
        ["--format", "fname}"],
        ["--format", "{fname.upper}"],
        ["--format", "{fname[0]}"],
        ["--format", "{}"],
        ["--format", "{0}"],
        ["--format", "{fname!r}"],
        ["--format", ""],
        ["--format", "/{fname}"],
        ["--hold-for", "-1"],
        ["--hold-for", "nan"],
        ["--hold-for", "soon"],
        ["--delete-after", "-5"],
        ["--concurrency", "0"],
        ["--part-size", "1MiB"],
        ["--endpoint-url", "not a url"],
        ["--checksum", "md4"],
        ["--no-such-option"],
    ],
)
def test_bad_options_exit_2_and_touch_nothing(spool: Path, args: list[str]) -> None:
    make_files(spool / "new", 2)
    before = snapshot(spool)
    result = run_cli(*args, spool, "noop")
    assert result.returncode == 2, result.stderr
    assert_one_line_error(result.stderr)
    assert result.stderr.startswith("spool_tool: error:")
    assert snapshot(spool) == before


@pytest.mark.parametrize(
    "destination",
    [
        "ftp://bucket",
        "s3://",
        "s3:///prefix",
        "s3://Upper",
        "s3://a",
        "s3://bad_name/x",
        "s3://b..c/",
        "s3://192.168.1.1/",
        "bucket",
    ],
)
def test_bad_destination_exit_2(spool: Path, destination: str) -> None:
    make_files(spool / "new", 1)
    before = snapshot(spool)
    result = run_cli(spool, destination)
    assert result.returncode == 2
    assert_one_line_error(result.stderr)
    assert snapshot(spool) == before


def test_missing_destination_is_usage_error(spool: Path) -> None:
    result = run_cli(spool)
    assert result.returncode == 2
    assert_one_line_error(result.stderr)


def test_unknown_token_error_lists_valid_tokens(spool: Path) -> None:
    result = run_cli("--format", "{year}", spool, "noop")
    assert "fname" in result.stderr
    assert "m_YYYY" in result.stderr


def test_noop_moves_regular_files_only(spool: Path, tmp_path: Path) -> None:
    new = spool / "new"
    contents = make_files(new, 3)
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    (new / "link").symlink_to(outside)
    (new / "dir").mkdir()
    os.mkfifo(new / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock_path = new / "sock"
    sock.bind(str(sock_path))
    try:
        result = run_cli(spool, "noop", timeout=30)
    finally:
        sock.close()
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (spool / "completed").iterdir()) == sorted(contents)
    for name, data in contents.items():
        assert (spool / "completed" / name).read_bytes() == data
    assert sorted(p.name for p in new.iterdir()) == ["dir", "fifo", "link", "sock"]
    assert outside.read_text() == "secret"
    assert "noop://f00000.dat" in result.stderr


def test_dry_run_changes_nothing(spool: Path) -> None:
    make_files(spool / "new", 2)
    before = snapshot(spool)
    result = run_cli("--dry-run", "--format", "x/{fname}", spool, "s3://bucket/pre")
    assert result.returncode == 0, result.stderr
    assert snapshot(spool) == before
    assert f"would upload {spool}/new/f00000.dat -> s3://bucket/pre/x/f00000.dat" in result.stdout


def test_dry_run_lists_deletions_without_deleting(spool: Path) -> None:
    completed = spool / "completed"
    completed.mkdir()
    old = completed / "old.dat"
    old.write_text("x")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    result = run_cli("--dry-run", spool, "noop")
    assert result.returncode == 0
    assert f"would delete {old}" in result.stdout
    assert old.exists()


def test_options_from_environment(spool: Path) -> None:
    make_files(spool / "new", 1)
    result = run_cli(
        spool, "s3://bucket", env={"SPOOL_TOOL_FORMAT": "env/{fname}", "SPOOL_TOOL_DRY_RUN": "1"}
    )
    assert result.returncode == 0, result.stderr
    assert "s3://bucket/env/f00000.dat" in result.stdout
    # the command line wins over the environment
    result = run_cli(
        "--format",
        "cli/{fname}",
        spool,
        "s3://bucket",
        env={"SPOOL_TOOL_FORMAT": "env/{fname}", "SPOOL_TOOL_DRY_RUN": "1"},
    )
    assert "s3://bucket/cli/f00000.dat" in result.stdout


def test_bad_option_from_environment_is_usage_error(spool: Path) -> None:
    result = run_cli(spool, "noop", env={"SPOOL_TOOL_HOLD_FOR": "-3"})
    assert result.returncode == 2
    assert_one_line_error(result.stderr)


def test_missing_spool_dir_reported_others_processed(spool: Path, tmp_path: Path) -> None:
    make_files(spool / "new", 2)
    missing = tmp_path / "missing"
    result = run_cli(missing, spool, "noop")
    assert result.returncode == 1
    assert str(missing) in result.stderr
    assert "Traceback" not in result.stderr
    assert len(list((spool / "completed").iterdir())) == 2


def test_hold_for_keeps_fresh_files(spool: Path) -> None:
    new = spool / "new"
    make_files(new, 1, prefix="fresh")
    make_files(new, 1, prefix="old")
    old = new / "old00000.dat"
    os.utime(old, (time.time() - 600, time.time() - 600))
    result = run_cli("--hold-for", "5", spool, "noop")
    assert result.returncode == 0
    assert (new / "fresh00000.dat").exists()
    assert (spool / "completed" / "old00000.dat").exists()


def test_busy_spool_is_skipped_with_notice(spool: Path) -> None:
    make_files(spool / "new", 1)
    with Journal.open(spool):
        result = run_cli(spool, "noop")
    assert result.returncode == 0
    assert "held by another spool_tool process" in result.stderr
    assert (spool / "new" / "f00000.dat").exists()


def test_completed_name_clash_gets_new_name(spool: Path) -> None:
    completed = spool / "completed"
    completed.mkdir()
    (completed / "f00000.dat").write_bytes(b"earlier")
    contents = make_files(spool / "new", 1)
    result = run_cli("--no-cleanup", spool, "noop")
    assert result.returncode == 0
    assert (completed / "f00000.dat").read_bytes() == b"earlier"
    assert (completed / "f00000~1.dat").read_bytes() == contents["f00000.dat"]


def test_cleanup_deletes_only_old_regular_files(spool: Path) -> None:
    completed = spool / "completed"
    completed.mkdir()
    now = time.time()
    old, young = completed / "old", completed / "young"
    for path, age_min in ((old, 11), (young, 9)):
        path.write_text(path.name)
        os.utime(path, (now - age_min * 60, now - age_min * 60))
    target = spool / "new" / "keep"
    target.write_text("keep")
    os.utime(target, (now - 3600, now - 3600))
    (completed / "link").symlink_to(target)
    result = run_cli("--no-upload", "--delete-after", "10", spool, "noop")
    assert result.returncode == 0, result.stderr
    assert not old.exists()
    assert young.exists()
    assert target.read_text() == "keep"


def test_key_too_long_fails_that_file_only(spool: Path) -> None:
    new = spool / "new"
    make_files(new, 1)
    long_name = "x" * 250
    (new / long_name).write_text("long")
    result = run_cli("--format", "{fname}/{fname}/{fname}/{fname}/{fname}", spool, "noop")
    assert result.returncode == 1
    assert "1024" in result.stderr
    assert (new / long_name).exists()
    assert (spool / "completed" / "f00000.dat").exists()
    assert "Traceback" not in result.stderr


def test_non_utf8_name_fails_that_file_only(spool: Path) -> None:
    new = spool / "new"
    make_files(new, 1)
    bad = os.path.join(os.fsencode(new), b"bad\xff.dat")
    with open(bad, "wb") as fh:
        fh.write(b"data")
    result = run_cli(spool, "noop")
    assert result.returncode == 1
    assert "UTF-8" in result.stderr
    assert os.path.exists(bad)
    assert (spool / "completed" / "f00000.dat").exists()
    assert "Traceback" not in result.stderr


def test_json_log_lines_are_objects(spool: Path) -> None:
    import json  # noqa: PLC0415

    make_files(spool / "new", 2)
    result = run_cli("--log-format", "json", spool, "noop")
    assert result.returncode == 0
    records = [json.loads(line) for line in result.stderr.splitlines()]
    uploaded = [r for r in records if r["event"] == "uploaded"]
    assert {Path(r["file"]).name for r in uploaded} == {"f00000.dat", "f00001.dat"}
    assert all(r["bytes"] == 64 and r["uri"].startswith("noop://") for r in uploaded)
    assert records[-1]["event"] == "summary"
    assert records[-1]["uploaded"] == 2
