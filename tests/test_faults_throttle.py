"""Issue 12's independent throttling suite: S3 answering ``503 SlowDown`` (the fleet simulation's
``ThrottlingProxy``: a per-partition request-rate limit, or a ``FaultProxy`` rule throttling every
write) in front of the session SeaweedFS, with the real job on both data paths.

Bounded retries: one retry loop through the adaptive gate (``destinations/gated.py``) keeps the
PUTs under throttling within 1.2x the files, where the libraries' own retries made 1.7-4.2 per
file (``notes/fleet.md``). Exactly once: every file is one object. A signal during the backoff
ends the run at once, the files staying in ``new/`` with their keys journaled.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bench.throttle_proxy import ThrottlingProxy
from spool_tool.events import Event, ThrottleReport
from spool_tool.observe.logs import LogWriter
from spool_tool.run import run
from spool_tool.throttle import ThrottlingEnded, ThrottlingStarted
from tests.faults.proxy import FaultProxy, FaultRule
from tests.faults.runs import make_config
from tests.helpers import (
    SPOOL_TOOL,
    get_body,
    list_objects,
    make_files,
    open_multipart_uploads,
)
from tests.test_faults_filesystem import claims_of

if TYPE_CHECKING:
    from devtools.seaweed import SeaweedServer

pytestmark = pytest.mark.s3

FILES = 200
RATE = 50.0  # requests/s the one partition takes


@pytest.mark.parametrize("engine", ["obstore", "boto3"])
def test_throttled_run_stays_within_1_2_puts_per_file(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, s3_env: None, engine: str
) -> None:
    make_files(spool_dir / "new", FILES, size=256)
    events: list[Event] = []
    with ThrottlingProxy(seaweed.endpoint_url, rate=RATE) as proxy:
        config = make_config(
            spool_dir, s3_bucket, proxy.url, concurrency=16, template="day/{fname}",
            max_attempts=5, engine=engine,  # type: ignore[arg-type]
        )  # fmt: skip
        summary = run(config, [events.append])
    puts = sum(counts.requests["PUT"] for counts in proxy.agents.values())
    assert summary.ok, summary.failures
    assert proxy.throttled > 0  # the limit was really hit
    assert puts <= 1.2 * FILES, (puts, proxy.throttled)
    assert sorted(list_objects(seaweed.client(), s3_bucket)) == [
        f"day/f{i:05d}.dat" for i in range(FILES)
    ]  # exactly once: one object per file
    assert summary.throttled == proxy.throttled
    reports = [e for e in events if isinstance(e, ThrottleReport)]
    assert sum(r.throttled for r in reports) == proxy.throttled
    # One line when throttling starts and one when it ends (the one-shot run's end).
    assert len([e for e in events if isinstance(e, ThrottlingStarted)]) == 1
    assert len([e for e in events if isinstance(e, ThrottlingEnded)]) == 1


def test_fixed_concurrency_counts_throttling_without_adapting(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, s3_env: None
) -> None:
    """``--concurrency-mode fixed`` keeps the limit (no started/ended lines), still through
    the one retry loop: every file arrives, throttled requests are counted."""
    make_files(spool_dir / "new", 60, size=256)
    events: list[Event] = []
    with ThrottlingProxy(seaweed.endpoint_url, rate=RATE) as proxy:
        config = make_config(
            spool_dir, s3_bucket, proxy.url, concurrency=16, template="day/{fname}",
            max_attempts=8,
        )  # fmt: skip
        config = dataclasses.replace(
            config, s3=dataclasses.replace(config.s3, concurrency_mode="fixed")
        )
        summary = run(config, [events.append])
    assert summary.ok, summary.failures
    assert len(list_objects(seaweed.client(), s3_bucket)) == 60
    assert summary.throttled == proxy.throttled
    assert not any(isinstance(e, ThrottlingStarted | ThrottlingEnded) for e in events)


def test_sigterm_during_throttle_backoff_exits_promptly(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path
) -> None:
    """Every write is throttled: the run sits in backoffs. SIGTERM ends it at once (exit 143,
    no traceback); the files stay in new/ and their keys stay journaled."""
    names = sorted(make_files(spool_dir / "new", 8))
    with FaultProxy(seaweed.endpoint_url) as proxy:
        proxy.set_rules([FaultRule(action="status", status=503, code="SlowDown")])
        url = {"AWS_ENDPOINT_URL": proxy.url, "AWS_ENDPOINT_URL_S3": proxy.url}
        env = {**os.environ, **seaweed.env(), **url}
        proc = subprocess.Popen(
            [*SPOOL_TOOL, "--max-attempts", "10", "--format", "day/{fname}", str(spool_dir),
             f"s3://{s3_bucket}"],
            env=env, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            time.sleep(3.0)  # started, pre-flight passed, PUTs throttled and backing off
            assert proc.poll() is None
            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=30)
            took = time.monotonic() - sent
        finally:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 143, stderr
    assert took < 3.0, (took, stderr)
    assert "Traceback" not in stderr
    assert sorted(p.name for p in (spool_dir / "new").iterdir()) == names
    assert sorted(claims_of(spool_dir)) == names
    assert list_objects(seaweed.client(), s3_bucket) == {}


@pytest.mark.parametrize("engine", ["obstore", "boto3"])
def test_bwlimit_holds_the_rate(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, s3_env: None, engine: str
) -> None:
    """40 x 256 KiB (10 MiB) at --bwlimit 2M: the bucket starts empty, so the run takes the
    10 MiB at 2 MiB/s (5 s) minus at most one burst (0.2 s of the rate), within 10%."""
    size, count, rate = 256 * 1024, 40, 2 << 20
    make_files(spool_dir / "new", count, size=size)
    config = make_config(spool_dir, s3_bucket, seaweed.endpoint_url, concurrency=16)
    s3 = dataclasses.replace(config.s3, bwlimit=rate, engine=engine)  # type: ignore[arg-type]
    started = time.monotonic()
    summary = run(dataclasses.replace(config, s3=s3))
    took = time.monotonic() - started
    assert summary.ok, summary.failures
    assert len(list_objects(seaweed.client(), s3_bucket)) == count
    ideal = (size * count - 0.2 * rate) / rate
    assert took >= ideal * 0.9, took
    assert took <= size * count / rate * 1.1 + 2.0, took  # + start-up and the last request


def test_bwlimit_paces_multipart_parts(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, s3_env: None
) -> None:
    """Parts are charged too: one 15 MiB file in 5 MiB parts at --bwlimit 5M takes ~3 s."""
    (spool_dir / "new" / "big.bin").write_bytes(os.urandom(15 << 20))
    config = make_config(spool_dir, s3_bucket, seaweed.endpoint_url, multipart=True)
    s3 = dataclasses.replace(config.s3, bwlimit=5 << 20)
    started = time.monotonic()
    summary = run(dataclasses.replace(config, s3=s3))
    took = time.monotonic() - started
    assert summary.ok, summary.failures
    assert took >= (15 - 1) / 5 * 0.9, took  # 15 MiB at 5 MiB/s, one burst and a part's slack


@pytest.mark.parametrize("engine", ["obstore", "boto3"])
def test_multipart_parts_throttled_complete_once(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, s3_env: None, engine: str
) -> None:
    """Parts answered 503 SlowDown are retried through the gate: each object complete and
    intact, one object per file, no multipart upload left open."""
    bodies = {f"big{i}.bin": os.urandom(12 << 20) for i in range(2)}
    for name, body in bodies.items():
        (spool_dir / "new" / name).write_bytes(body)
    events: list[Event] = []
    with FaultProxy(seaweed.endpoint_url) as proxy:
        proxy.set_rules(
            [FaultRule(action="status", methods=frozenset({"PUT"}), path_contains=part, times=2)
             for part in ("partNumber=2", "partNumber=3")]
        )  # fmt: skip
        config = make_config(
            spool_dir, s3_bucket, proxy.url, multipart=True, template="{fname}",
            engine=engine,  # type: ignore[arg-type]
        )  # fmt: skip
        summary = run(config, [events.append])
    assert summary.ok, summary.failures
    assert summary.throttled == 4  # each rule answers SlowDown twice
    client = seaweed.client()
    for name, body in bodies.items():
        assert get_body(client, s3_bucket, name) == body
    assert sorted(list_objects(client, s3_bucket)) == sorted(bodies)
    assert open_multipart_uploads(client, s3_bucket) == []


def test_throttling_lines_one_warning_then_one_info() -> None:
    """What a person and a log pipeline see: one warning when throttling starts, one line when
    it ends, in text and as JSON events."""
    text, as_json = io.StringIO(), io.StringIO()
    for writer in (LogWriter(stream=text), LogWriter(fmt="json", stream=as_json)):
        writer(ThrottlingStarted(limit=11))
        writer(ThrottleReport(throttled=40, limit=11))  # counted, not logged
        writer(ThrottlingEnded(seconds=12.34, throttled=40, limit=16))
        writer.flush()  # info lines are written in batches (at most 0.2 s late)
    started, ended = text.getvalue().splitlines()
    assert " WARNING S3 is throttling requests (503 SlowDown): uploads in flight lowered to 11" in (
        started
    )
    assert ended.endswith(
        "INFO S3 throttling ended after 12.3 s (40 requests throttled); "
        "uploads in flight back to 16"
    )
    records = [json.loads(line) for line in as_json.getvalue().splitlines()]
    assert [r["event"] for r in records] == ["throttling_started", "throttling_ended"]
    assert records[1]["throttled"] == 40
