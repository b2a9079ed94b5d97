"""Shared helpers for tests that drive spool_tool as a user would."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

SPOOL_TOOL = [sys.executable, "-m", "spool_tool"]
# Root's permission bypass is two capabilities; without them ``chmod 000`` denies root too.
_DROP_BYPASS = ("--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all")


def permissions_enforced() -> list[str]:
    """An argv prefix under which ``chmod 000`` really denies access to the command run.

    Empty for an ordinary user. For root, ``setpriv`` drops ``CAP_DAC_OVERRIDE`` and
    ``CAP_DAC_READ_SEARCH``: the process keeps uid 0, so the checkout and its venv stay
    reachable even when they live in a directory only root can read (a ``mktemp -d``, /root),
    which switching to another uid would not allow. Skips the test, with the reason, when
    setpriv is missing or may not drop capabilities here.
    """
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed: root would read a chmod 000 entry")
    prefix = [setpriv, *_DROP_BYPASS]
    probe = subprocess.run([*prefix, "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"setpriv cannot drop root's permission bypass here: {probe.stderr.strip()}")
    return prefix


def run_cli(
    *args: str | os.PathLike[str],
    env: dict[str, str] | None = None,
    timeout: float = 120,
    prefix: list[str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the real command in a subprocess, with the test's environment plus ``env``
    (``prefix``: e.g. ``permissions_enforced()``)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [*(prefix or []), *SPOOL_TOOL, *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )


def make_files(new: Path, count: int, size: int = 64, prefix: str = "f") -> dict[str, bytes]:
    """Create ``count`` files of ``size`` distinct bytes in ``new``; returns name -> content."""
    new.mkdir(parents=True, exist_ok=True)
    contents: dict[str, bytes] = {}
    for i in range(count):
        name = f"{prefix}{i:05d}.dat"
        data = (f"{name}:".encode() + os.urandom(size))[:size] if size else b""
        (new / name).write_bytes(data)
        contents[name] = data
    return contents


def list_objects(client: S3Client, bucket: str, prefix: str = "") -> dict[str, int]:
    """Every object under ``prefix`` -> its size."""
    found: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            found[obj["Key"]] = obj["Size"]
    return found


def get_body(client: S3Client, bucket: str, key: str) -> bytes:
    return client.get_object(Bucket=bucket, Key=key)["Body"].read()


def open_multipart_uploads(client: S3Client, bucket: str) -> list[str]:
    uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return [u["Key"] for u in uploads]


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Relative path -> (size, mtime_ns) of everything under ``root`` (symlinks not followed)."""
    result: dict[str, tuple[int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            st = path.lstat()
            result[str(path.relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return result


def assert_one_line_error(stderr: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr


class Daemon:
    """``spool_tool --watch`` in a subprocess; stderr lines are collected as they come."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [*SPOOL_TOOL, "--watch", *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def matching(self, text: str) -> list[str]:
        return [line for line in list(self.lines) if text in line]

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 20) -> int:
        self.proc.send_signal(signum)
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    def close(self) -> None:
        """Kill it if still running; always reap it and close the pipe."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)


def damage_table(spool: Path, table: str) -> None:
    """Overwrite the root page of ``table`` with garbage, as a bad disk sector would."""
    path = spool / ".spool_tool" / "journal.sqlite3"
    db = sqlite3.connect(path)
    try:
        (root,) = db.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)
        ).fetchone()
        (page_size,) = db.execute("PRAGMA page_size").fetchone()
    finally:
        db.close()
    with open(path, "r+b") as fh:
        fh.seek(page_size * (root - 1))
        fh.write(b"\xde\xad" * (page_size // 2))
