"""Standard streams that are closed, full or gone, as cron lines and pipes make them (issue 9
audit): no traceback, the work done or refused cleanly, an exit status that tells."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from tests.helpers import SPOOL_TOOL, make_files

COMMANDS = {
    "dry-run": ["--dry-run", "{spool}", "noop"],
    "status": ["--status", "{spool}"],
    "status-json": ["--status", "--log-format", "json", "{spool}"],
}


def _shell(args: list[str], spool: Path, redirect: str) -> subprocess.CompletedProcess[str]:
    """The command with a shell redirection (``>&-``, ``2>/dev/full``...); stderr is
    captured unless the redirection is about it."""
    argv = [*SPOOL_TOOL, *(arg.format(spool=spool) for arg in args)]
    script = f"{shlex.join(argv)} {redirect}"
    return subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_output_to_a_full_disk_is_one_line_exit_1(spool_dir: Path, command: str) -> None:
    """stdout on /dev/full (a full disk) used to end in an OSError traceback from a listener
    or from rich."""
    make_files(spool_dir / "new", 5)

    result = _shell(COMMANDS[command], spool_dir, ">/dev/full")

    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("spool_tool:")]
    assert errors == ["spool_tool: cannot write to standard output: No space left on device"]
    assert len(list((spool_dir / "new").iterdir())) == 5


@pytest.mark.parametrize("command", [*COMMANDS, "run"])
def test_closed_stdout_is_dev_null(spool_dir: Path, command: str) -> None:
    """``>&-`` used to give an AttributeError traceback (sys.stdout is None) for the dry run
    and --status. Now their output goes nowhere, exit 0; a run ships as usual."""
    make_files(spool_dir / "new", 5)
    args = COMMANDS.get(command, ["{spool}", "noop"])

    result = _shell(args, spool_dir, ">&-")

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    if command == "run":
        assert len(list((spool_dir / "completed").iterdir())) == 5


@pytest.mark.parametrize("redirect", ["2>&-", "2>/dev/full"])
def test_run_with_stderr_closed_or_full_ships_and_exits_0(spool_dir: Path, redirect: str) -> None:
    """stderr closed used to crash the run before its first upload (AttributeError: nothing
    shipped, exit 1); on /dev/full the summary line raised after the work (exit 1). A log line
    that cannot be written no longer stops anything: the files ship, exit 0."""
    make_files(spool_dir / "new", 5)

    result = _shell(["{spool}", "noop"], spool_dir, f"{redirect}; echo rc=$?")

    assert result.stdout.strip().endswith("rc=0"), result.stdout
    assert list((spool_dir / "new").iterdir()) == []
    assert len(list((spool_dir / "completed").iterdir())) == 5


def test_reader_that_went_away_ends_the_dry_run_quietly(spool_dir: Path) -> None:
    """``| head -c 10``: EPIPE ends the command with 1 and nothing on stderr, no traceback."""
    make_files(spool_dir / "new", 2000)

    result = _shell(
        COMMANDS["dry-run"], spool_dir, "| head -c 10 >/dev/null; echo rc=${PIPESTATUS[0]}"
    )

    assert result.stdout.strip() == "rc=1", result.stdout
    assert "Traceback" not in result.stderr
    assert "error" not in result.stderr.lower()
