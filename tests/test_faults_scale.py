"""FAULT-MATRIX row 33: a huge backlog in ``new/`` (noop destination: the spool side alone).

The CLI runs in a subprocess that reports its own peak RSS (``VmHWM`` from /proc/self/status,
read at exit). Runtime and peak RSS are printed to the terminal and kept as junit properties
(``record_property``). The 100,000-file run is ``slow`` (35-50 s with file creation and
teardown while the rest of the suite runs); the 20,000-file variant runs by default.

Measured on the 2-core test machine (noop, -q): 20,000 files moved in 2.3-4.4 s, 100,000 in
12-25 s (4,000-8,800 files/s depending on load); peak RSS 38-40 MiB and 40-42 MiB: memory does
not grow with the backlog.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from spool_tool.journal import Journal

# "Bounded memory": about 40 MiB is measured for 20,000 and 100,000 files alike; keeping even
# 1 KiB per file (paths, stat results, events) would add about 100 MiB at 100,000 files.
RSS_CEILING_KIB = 100 * 1024


def populate(new: Path, count: int) -> None:
    for i in range(count):
        fd = os.open(new / f"f{i:06d}.dat", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, b"%d\n" % i)
        finally:
            os.close(fd)


# Runs the CLI and reports its peak RSS (VmHWM) on exit. Measured inside the process on
# purpose: the rusage of a child forked from pytest (os.wait4, /usr/bin/time run from pytest)
# starts with the pytest process's own high-water mark, which exec carries over.
PEAK_RSS_LAUNCHER = """
import atexit, runpy, sys
def report():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                sys.stderr.write("PEAK_RSS_KIB " + line.split()[1] + "\\n")
atexit.register(report)
sys.argv = ["spool_tool", *sys.argv[1:]]
runpy.run_module("spool_tool", run_name="__main__", alter_sys=True)
"""


def run_measured(args: list[str], log: Path, timeout: float) -> tuple[int, float, int]:
    """Run the CLI; return (exit code, wall seconds, peak RSS of that process in KiB)."""
    started = time.monotonic()
    with log.open("wb") as out:
        result = subprocess.run(
            [sys.executable, "-c", PEAK_RSS_LAUNCHER, *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
    seconds = time.monotonic() - started
    peaks = [
        line for line in log.read_text(errors="replace").splitlines() if "PEAK_RSS_KIB" in line
    ]
    assert len(peaks) == 1, "the launcher did not report VmHWM"
    return result.returncode, seconds, int(peaks[0].split()[-1])


def backlog(
    spool: Path,
    count: int,
    *,
    capsys: pytest.CaptureFixture[str],
    record_property: Any,
    timeout: float,
) -> None:
    new = spool / "new"
    made = time.monotonic()
    populate(new, count)
    made = time.monotonic() - made
    log = spool.parent / "spool_tool.log"

    code, seconds, rss_kib = run_measured(["-q", str(spool), "noop"], log, timeout)

    record_property("files", count)
    record_property("seconds", round(seconds, 2))
    record_property("peak_rss_kib", rss_kib)
    with capsys.disabled():
        print(
            f"\n[row 33] {count} files: created in {made:.1f} s; spool_tool noop moved them in "
            f"{seconds:.1f} s ({count / seconds:.0f} files/s), peak RSS {rss_kib / 1024:.1f} MiB"
        )
    output = log.read_text(errors="replace")
    assert code == 0, output[-2000:]
    assert "Traceback" not in output
    assert not any(os.scandir(new)), "files left in new/"
    with os.scandir(spool / "completed") as entries:
        assert sum(1 for _ in entries) == count
    journal = Journal.read_only(spool)
    assert journal is not None
    try:
        assert journal.claims == {}  # every claim was completed and dropped
    finally:
        journal.close()
    assert rss_kib < RSS_CEILING_KIB


def test_20k_files_all_moved_with_bounded_memory(
    spool_dir: Path, capsys: pytest.CaptureFixture[str], record_property: Any
) -> None:
    """Row 33, fast variant."""
    backlog(spool_dir, 20_000, capsys=capsys, record_property=record_property, timeout=120)


@pytest.mark.slow
def test_100k_files_all_moved_with_bounded_memory(
    spool_dir: Path, capsys: pytest.CaptureFixture[str], record_property: Any
) -> None:
    """Row 33 as written: 100,000 files."""
    backlog(spool_dir, 100_000, capsys=capsys, record_property=record_property, timeout=290)
