"""Memory bound: file data held by uploads at once never exceeds the byte budget."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from spool_tool.budget import ByteBudget, PartBuffers
from spool_tool.config import Config, S3Options, parse_destination
from spool_tool.destinations import make_destination
from spool_tool.run import run
from tests.helpers import list_objects

if TYPE_CHECKING:
    from devtools.seaweed import SeaweedServer
    from spool_tool.destinations.base import Destination

MiB = 1024 * 1024


class PeakBudget(ByteBudget):
    """A ``ByteBudget`` that remembers the most it held at once (only tests ask)."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.peak = 0

    @contextlib.contextmanager
    def hold(self, size: int) -> Iterator[None]:
        with super().hold(size):
            with self._cond:
                self.peak = max(self.peak, self.used)
            yield


def test_budget_bounds_concurrent_holders() -> None:
    budget = PeakBudget(10)
    inside: list[int] = []
    lock = threading.Lock()

    def hold(size: int) -> None:
        with budget.hold(size):
            with lock:
                inside.append(budget.used)
            time.sleep(0.01)

    threads = [threading.Thread(target=hold, args=(3,)) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert budget.used == 0
    assert budget.peak <= 10
    assert max(inside) <= 10
    assert len(inside) == 20


def test_an_item_larger_than_the_budget_goes_through_alone() -> None:
    budget = ByteBudget(10)
    with budget.hold(50):
        assert budget.used == 50
    assert budget.used == 0


def test_uploads_respect_the_budget(
    seaweed: SeaweedServer, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = tmp_path / "spool"
    (spool / "new").mkdir(parents=True)
    for i in range(24):
        (spool / "new" / f"f{i:02d}").write_bytes(os.urandom(3 * MiB))
    for name, value in seaweed.env().items():
        monkeypatch.setenv(name, value)
    config = Config(
        spool_dirs=(spool,),
        destination=parse_destination(f"s3://{s3_bucket}/b/"),
        concurrency=64,
        s3=S3Options(addressing_style="path"),
    )
    budgets: list[PeakBudget] = []

    def small_budget(cfg: Config) -> Destination:
        destination = make_destination(cfg)
        destination.budget = PeakBudget(8 * MiB)  # type: ignore[attr-defined]
        budgets.append(destination.budget)  # type: ignore[attr-defined]
        return destination

    summary = run(config, [], destination_factory=small_budget)
    assert summary.ok
    assert summary.uploaded == 24
    assert len(list_objects(seaweed.client(), s3_bucket)) == 24
    (budget,) = budgets
    assert 3 * MiB <= budget.peak <= 8 * MiB  # at most two 3 MiB files in memory at once


_CHURN = """
import os, resource, sys, threading
from spool_tool.budget import ByteBudget, PartBuffers
budget = ByteBudget(64 << 20)
fd = os.open(sys.executable, os.O_RDONLY)
def rss(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10
def parts():
    for _ in range(12):
        for size in (32 << 20, 16 << 20):  # a 48 MiB file in 32 MiB parts
            with budget.hold(size):
                data = bytearray(size)  # a part read into memory, touched
                data[::4096] = b"x" * len(data[::4096])
                del data
before = rss()
threads = [threading.Thread(target=parts) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print(rss() - before)
"""


def test_resident_memory_follows_the_budget_for_any_part_size() -> None:
    """Issue 9.18: glibc kept freed 16 MiB parts resident in its per-thread arenas, so a run
    with --part-size 32MiB reached 410 MiB RSS against a 256 MiB budget. Eight threads cycling
    32 + 16 MiB buffers through a 64 MiB budget must stay near 64 MiB above the baseline."""
    result = subprocess.run(
        [sys.executable, "-c", _CHURN], capture_output=True, text=True, timeout=120, check=True
    )
    grown = int(result.stdout)
    assert grown <= (64 + 24) * MiB, f"RSS grew {grown / MiB:.0f} MiB for a 64 MiB budget"


def test_part_buffers_are_reused_while_an_upload_is_on_and_dropped_after() -> None:
    """A part's buffer goes back to the pool for the next part; a short last part's buffer is
    never kept; at most ``keep`` are kept; none once the last upload ends."""
    pool = PartBuffers(keep=2)
    with pool.using():
        with pool.buffer(8) as first:
            pass
        with pool.buffer(8) as again:
            assert again is first
        with pool.buffer(8) as a, pool.buffer(8) as b, pool.buffer(8) as c:
            assert len({id(a), id(b), id(c)}) == 3
        with pool.buffer(3) as short:
            assert len(short) == 3
        with pool.buffer(8) as d, pool.buffer(8) as e, pool.buffer(8) as f:
            assert {id(d), id(e)} <= {id(a), id(b), id(c)}  # two were kept, not the short one
            assert id(f) not in {id(a), id(b), id(c)}
        with pool.buffer(16) as larger:
            assert len(larger) == 16
        with pool.buffer(16) as larger_again:
            assert larger_again is larger  # the larger size is the one kept now
    with pool.using(), pool.buffer(16) as after:
        assert after is not larger  # dropped when the upload ended


def test_a_part_is_read_whole_into_a_reused_buffer(seaweed: SeaweedServer, tmp_path: Path) -> None:
    """Multipart through the part pool: every byte arrives, parts of 5 MiB and a short last
    part, two files one after the other (the second reuses the first's buffers)."""
    bucket = "pool"
    seaweed.client().create_bucket(Bucket=bucket)
    spool = tmp_path / "spool"
    (spool / "new").mkdir(parents=True)
    bodies = {f"f{i}.bin": os.urandom(11 * MiB + i) for i in range(2)}
    for name, body in bodies.items():
        (spool / "new" / name).write_bytes(body)
    env = {**os.environ, **seaweed.env(), "SPOOL_TOOL_PART_SIZE": "5MiB"}
    result = subprocess.run(
        [sys.executable, "-m", "spool_tool", "-q", "--multipart-threshold", "5MiB",
         "--part-concurrency", "2", "--concurrency", "1", str(spool), f"s3://{bucket}/p/"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    client = seaweed.client()
    for name, body in bodies.items():
        got = client.get_object(Bucket=bucket, Key=f"p/{name}")
        assert got["ETag"].strip('"').endswith("-3"), got["ETag"]  # 5 + 5 + 1 MiB: multipart
        assert got["Body"].read() == body, name
