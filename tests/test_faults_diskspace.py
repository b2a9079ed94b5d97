"""``--min-free`` on a real small filesystem: a 1 MiB tmpfs mounted over the spool in a mount
namespace (``unshare -m``, as the disk-full rows of ``test_faults_filesystem.py`` do), with the
real command in a subprocess. Marked ``root``; skips with the reason where mounting is refused.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import SPOOL_TOOL

KIB = 1024

# Mounts a 1 MiB tmpfs on $MNT, runs $PREPARE, then "$@"; prints, after the command's output,
# one JSON line: completed/'s and new/'s names and the tmpfs's free bytes (statvfs f_bavail).
SCRIPT = r"""
set -e
mount -t tmpfs -o size=1m tmpfs "$MNT"
sh -c "$PREPARE"
set +e
"$@" 2>"$MNT.stderr"
rc=$?
"$PYTHON" -c '
import json, os, sys
mnt = sys.argv[1]
names = lambda d: sorted(os.listdir(os.path.join(mnt, d)))
st = os.statvfs(mnt)
print(json.dumps({"completed": names("completed"), "new": names("new"),
                  "free": st.f_bavail * st.f_frsize}))
' "$MNT"
exit $rc
"""


def fill(directory: str, prefix: str, count: int) -> str:
    """Shell lines making ``count`` files of 64 KiB, a second apart over the last minute (the
    first is the oldest; none is old enough for --delete-after)."""
    start = int(time.time()) - 60
    return "; ".join(
        f"dd if=/dev/zero of={directory}/{prefix}{i:02d} bs=64k count=1 2>/dev/null; "
        f"touch -d @{start + i} {directory}/{prefix}{i:02d}"
        for i in range(count)
    )


def run_on_small_tmpfs(spool: Path, prepare: str, *args: str) -> tuple[int, str, dict[str, object]]:
    """Run the CLI on ``spool`` (a 1 MiB tmpfs); returns (exit status, stderr, what was left)."""
    result = subprocess.run(
        ["unshare", "-m", "--", "sh", "-c", SCRIPT, "sh", *SPOOL_TOOL, *args, str(spool), "noop"],
        env={
            **os.environ,
            "MNT": str(spool),
            "PREPARE": f"mkdir -p {spool}/new {spool}/completed; {prepare}",
            "PYTHON": SPOOL_TOOL[0],
            "PYTHONDONTWRITEBYTECODE": "1",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    stderr_file = spool.parent / f"{spool.name}.stderr"
    stderr = stderr_file.read_text() if stderr_file.exists() else result.stderr
    last = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "{}"
    return result.returncode, stderr + result.stderr, json.loads(last)


@pytest.mark.root
def test_min_free_on_a_small_tmpfs_frees_space_oldest_first(
    tmp_path: Path, mount_namespace: None
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    names = [f"c{i:02d}" for i in range(12)]  # 768 KiB of the 1 MiB
    rc, stderr, left = run_on_small_tmpfs(
        spool, fill(f"{spool}/completed", "c", 12), "--min-free", "50%"
    )
    assert rc == 0, stderr
    assert "Traceback" not in stderr
    kept = left["completed"]
    assert isinstance(kept, list)
    assert kept
    assert kept == names[len(names) - len(kept) :]  # the newest are kept, the oldest went
    assert len(kept) < len(names)
    assert isinstance(left["free"], int)
    assert left["free"] >= 512 * KIB
    assert "for --min-free" in stderr


@pytest.mark.root
def test_min_free_warns_when_new_fills_the_disk(tmp_path: Path, mount_namespace: None) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    waiting = [f"n{i:02d}" for i in range(12)]
    rc, stderr, left = run_on_small_tmpfs(
        spool, fill(f"{spool}/new", "n", 12), "--no-upload", "--min-free", "50%"
    )
    assert rc == 0, stderr
    assert left["new"] == waiting  # nothing in new/ is ever deleted
    warnings = [line for line in stderr.splitlines() if " WARNING " in line]
    assert len(warnings) == 1, stderr
    assert "new/ alone (768.0 KiB) keeps the filesystem under --min-free" in warnings[0]
    assert "Traceback" not in stderr
