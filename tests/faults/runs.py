"""Helpers for fault tests that run the job in-process against a real S3 server.

``make_config`` builds a ``Config`` for one spool (key template with ``{uuid4}``, so a second
object for the same file shows up as a second key); ``hooked`` is a destination factory for
``spool_tool.run.run`` that installs a ``tests.faults.hooks`` plan on the real boto3 client;
``mutate_during`` is such a plan that never fails a request but changes the source file while a
given request is on its way; ``Recorder`` keeps events and the key each file was first given;
``assert_retry_ok`` checks the RETRY-OK promise of FAULT-MATRIX.md.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from spool_tool.config import Config, S3Options, parse_destination
from spool_tool.destinations import make_destination
from spool_tool.destinations.s3 import S3Destination
from spool_tool.events import Event, FileFailed, FileUploaded, Summary
from spool_tool.keys import KeyTemplate
from spool_tool.run import run
from tests.faults.hooks import FaultPlan, InstalledFaults, RequestInfo, install_faults
from tests.helpers import get_body, list_objects, open_multipart_uploads

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from spool_tool.destinations.base import Destination

UNIQUE = "{uuid4}/{fname}"
MiB = 1024 * 1024


class Recorder:
    """A listener keeping every event; knows the key each file was given first."""

    def __init__(self, bucket: str) -> None:
        self.prefix = f"s3://{bucket}/"
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def failed(self) -> list[FileFailed]:
        return [e for e in self.events if isinstance(e, FileFailed)]

    def keys(self) -> dict[str, str]:
        """File name -> key, from the first upload or failure event of each file."""
        found: dict[str, str] = {}
        for event in self.events:
            if isinstance(event, FileUploaded | FileFailed) and event.uri:
                found.setdefault(event.path.name, event.uri.removeprefix(self.prefix))
        return found


def make_config(
    spool: Path,
    bucket: str,
    endpoint: str,
    *,
    max_attempts: int = 3,
    read_timeout: float = 60.0,
    concurrency: int = 4,
    multipart: bool = False,
    template: str = UNIQUE,
    engine: Literal["auto", "boto3", "obstore"] = "auto",
) -> Config:
    """``engine="boto3"`` is needed wherever a hook must see single PUTs: the ``auto`` engine
    may send them through obstore, which the botocore hook cannot intercept."""
    s3 = S3Options(endpoint_url=endpoint, max_attempts=max_attempts, connect_timeout=5.0)
    s3 = dataclasses.replace(s3, read_timeout=read_timeout, engine=engine)
    if multipart:
        s3 = dataclasses.replace(s3, multipart_threshold=5 * MiB, part_size=5 * MiB)
    return Config(
        spool_dirs=(spool,),
        destination=parse_destination(f"s3://{bucket}"),
        template=KeyTemplate.parse(template),
        concurrency=concurrency,
        s3=s3,
    )


def hooked(plans: list[FaultPlan], installed: list[InstalledFaults]) -> Callable[..., Destination]:
    """A destination factory that installs the fault hook on the real S3 client."""

    def factory(config: Config) -> Destination:
        destination = make_destination(config)
        assert isinstance(destination, S3Destination)
        installed.append(install_faults(destination.client, plans))
        return destination

    return factory


def mutate_during(operation: str, action: Callable[[], None]) -> FaultPlan:
    """A plan that runs ``action`` once, when the first ``operation`` request is about to be
    sent (its body already read from the file), and then lets every request through."""
    done = threading.Event()

    def decide(info: RequestInfo) -> bool:
        del info
        if not done.is_set():
            done.set()
            action()
        return False

    return FaultPlan(operations={operation}, decide=decide)


def run_hooked(config: Config, plans: list[FaultPlan], recorder: Recorder) -> Summary:
    installed: list[InstalledFaults] = []
    return run(config, [recorder], destination_factory=hooked(plans, installed))


def assert_retry_ok(
    client: S3Client,
    bucket: str,
    spool: Path,
    contents: dict[str, bytes],
    first_keys: dict[str, str],
) -> None:
    """RETRY-OK: one object per file at its first key, byte-identical, no open multipart
    upload, every file moved to completed/ unchanged."""
    assert sorted(first_keys) == sorted(contents)
    objects = list_objects(client, bucket)
    assert sorted(objects) == sorted(first_keys.values()), "a file has 0 or 2+ objects"
    for name, data in contents.items():
        assert get_body(client, bucket, first_keys[name]) == data, name
        assert (spool / "completed" / name).read_bytes() == data
    assert list((spool / "new").iterdir()) == []
    assert open_multipart_uploads(client, bucket) == []


def run_until_done(config: Config, recorder: Recorder, *, runs: int) -> tuple[int, Summary]:
    """Rerun (as cron would) until a run succeeds; return (runs needed, last summary)."""
    summary = Summary()
    for attempt in range(1, runs + 1):
        summary = run(config, [recorder])
        if summary.ok:
            return attempt, summary
    return runs, summary


def big_file(path: Path, size: int, *, age: float = 3600) -> bytes:
    """Random bytes, mtime ``age`` seconds ago (oldest first: shipped before the others)."""
    data = os.urandom(size)
    path.write_bytes(data)
    old = time.time() - age
    os.utime(path, (old, old))
    return data
