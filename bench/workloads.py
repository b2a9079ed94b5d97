"""Workload definitions and fast generation of their files."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench.tools import ALL_TOOLS, S5CMD, SPOOL_DEFAULTS, SPOOL_TOOL, SPOOL_VARIANTS

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

KIB = 1024
MIB = 1024 * KIB
_CHUNK = 8 * MIB


@dataclass(frozen=True)
class Workload:
    name: str  # W0..W5
    count: int
    size: int  # bytes per file
    runs: int  # default number of runs per tool
    tools: tuple[str, ...]  # default tools
    timeout: float  # seconds per run (W5: until the first upload)
    first_upload: bool = False  # W5: measure time to first upload, then stop the tool

    @property
    def total_bytes(self) -> int:
        return self.count * self.size

    def describe(self) -> str:
        if self.count == 0:
            return "an empty spool (a run with nothing to do)"
        return f"{self.count:,} x {human_size(self.size)}"


def human_size(n: int) -> str:
    for unit, factor in (("MiB", MIB), ("KiB", KIB)):
        if n >= factor and n % factor == 0:
            return f"{n // factor} {unit}"
    return f"{n} B" if n != 1 else "1 byte"


# W0 (nothing to do) only for spool_tool: s5cmd and aws exit non-zero on an empty source.
_W4_TOOLS = (SPOOL_TOOL, SPOOL_DEFAULTS, S5CMD)

FULL: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("W0", 0, 0, 5, SPOOL_VARIANTS, 120),
        Workload("W1", 5_000, 4 * KIB, 5, ALL_TOOLS, 600),
        Workload("W2", 500, 256 * KIB, 5, ALL_TOOLS, 600),
        Workload("W3", 4, 256 * MIB, 5, ALL_TOOLS, 900),
        Workload("W4", 100_000, 1 * KIB, 1, _W4_TOOLS, 3600),
        Workload("W5", 1_000_000, 1, 1, (SPOOL_TOOL,), 1800, first_upload=True),
    )
}

# --quick: the same shapes, small enough that everything runs in about a minute.
QUICK: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("W0", 0, 0, 1, SPOOL_VARIANTS, 60),
        Workload("W1", 500, 4 * KIB, 1, ALL_TOOLS, 300),
        Workload("W2", 50, 256 * KIB, 1, ALL_TOOLS, 300),
        Workload("W3", 2, 24 * MIB, 1, ALL_TOOLS, 300),
        Workload("W4", 2_000, 1 * KIB, 1, _W4_TOOLS, 300),
        Workload("W5", 10_000, 1, 1, (SPOOL_TOOL,), 300, first_upload=True),
    )
}


def file_name(index: int) -> str:
    return f"f{index:07d}.dat"


def generate(directory: str, workload: Workload) -> None:
    """Write ``workload.count`` files of ``workload.size`` bytes into ``directory`` (created).

    Plain os.open/os.write/os.close with a directory fd: about 100k small files per second.
    Contents are pseudo-random and differ per file (the index is stamped in front), so neither
    compression nor deduplication can help any tool.
    """
    os.makedirs(directory)
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    size = workload.size
    try:
        if size <= _CHUNK:
            base = os.urandom(size + 8)
            for i in range(workload.count):
                data = (i.to_bytes(8, "little") + base)[:size] if size > 1 else b"x"
                fd = os.open(file_name(i), flags, 0o644, dir_fd=dfd)
                try:
                    _write_all(fd, data)
                finally:
                    os.close(fd)
        else:
            chunk = os.urandom(_CHUNK)
            for i in range(workload.count):
                fd = os.open(file_name(i), flags, 0o644, dir_fd=dfd)
                try:
                    remaining = size
                    while remaining:
                        piece = chunk[: min(remaining, _CHUNK)]
                        if remaining == size:  # make every file distinct
                            piece = i.to_bytes(8, "little") + piece[8:]
                        _write_all(fd, piece)
                        remaining -= len(piece)
                finally:
                    os.close(fd)
    finally:
        os.close(dfd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def expected_names(workload: Workload) -> set[str]:
    return {file_name(i) for i in range(workload.count)}


def prepare_run(client: S3Client, spool: Path, bucket: str, workload: Workload) -> float:
    """What every timed run starts from (``bench.run`` and ``bench.ab``): the workload freshly
    generated in ``spool``/new and synced, and a new bucket already written to once. Returns
    the seconds the generation took."""
    began = time.monotonic()
    generate(str(spool / "new"), workload)
    os.sync()  # no writeback of the fresh files competing with the timed run
    seconds = time.monotonic() - began
    client.create_bucket(Bucket=bucket)
    # SeaweedFS allocates a volume on a bucket's first write (~0.2 s); do that untimed.
    client.put_object(Bucket=bucket, Key="warmup", Body=b"w")
    client.delete_object(Bucket=bucket, Key="warmup")
    return seconds
