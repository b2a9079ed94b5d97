"""Memory bound: file data held by uploads at once never exceeds the byte budget."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from spool_tool.budget import ByteBudget
from spool_tool.config import Config, S3Options, parse_destination
from spool_tool.destinations import make_destination
from spool_tool.run import run
from tests.helpers import list_objects

if TYPE_CHECKING:
    from devtools.seaweed import SeaweedServer
    from spool_tool.destinations.base import Destination

MiB = 1024 * 1024


def test_budget_bounds_concurrent_holders() -> None:
    budget = ByteBudget(10)
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
    budgets: list[ByteBudget] = []

    def small_budget(cfg: Config) -> Destination:
        destination = make_destination(cfg)
        destination.budget = ByteBudget(8 * MiB)  # type: ignore[attr-defined]
        budgets.append(destination.budget)  # type: ignore[attr-defined]
        return destination

    summary = run(config, [], destination_factory=small_budget)
    assert summary.ok
    assert summary.uploaded == 24
    assert len(list_objects(seaweed.client(), s3_bucket)) == 24
    (budget,) = budgets
    assert 3 * MiB <= budget.peak <= 8 * MiB  # at most two 3 MiB files in memory at once
