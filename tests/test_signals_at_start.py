"""A Ctrl-C while the command is still loading its modules (issue 9 audit)."""

from __future__ import annotations

import signal
import subprocess
import sys
import tomllib
from pathlib import Path

# Sends SIGINT to itself when spool_tool.cli starts loading: the moment a Ctrl-C lands in
# most often, as the imports take a few tenths of a second. Deterministic, unlike a timer.
_INTERRUPT_WHILE_LOADING = """
import importlib.abc, os, signal, sys
class Interrupt(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "spool_tool.cli":
            os.kill(os.getpid(), signal.SIGINT)
        return None
sys.meta_path.insert(0, Interrupt())
sys.argv = ["spool_tool", "--status", sys.argv[1]]
import runpy
runpy.run_module("spool_tool", run_name="__main__", alter_sys=True)
"""


def test_sigint_while_loading_ends_as_the_signal_does_without_a_traceback(
    spool_dir: Path,
) -> None:
    """``python -m spool_tool`` (and the ``spool_tool`` command, the same ``entry``) used to
    print a KeyboardInterrupt traceback from inside an import."""
    result = subprocess.run(
        [sys.executable, "-c", _INTERRUPT_WHILE_LOADING, str(spool_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == -signal.SIGINT, result.stderr
    assert result.stdout == ""


def test_the_command_starts_through_the_same_entry() -> None:
    """The installed ``spool_tool`` script gets the same protection as ``python -m``."""
    pyproject = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["spool_tool"] == "spool_tool.__main__:entry"
