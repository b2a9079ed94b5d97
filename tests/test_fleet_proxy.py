"""bench/throttle_proxy.py: the S3-like per-partition rate limit the fleet simulation relies on."""

from __future__ import annotations

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from bench.fleet import jain_index
from bench.throttle_proxy import (
    PartitionBuckets,
    ThrottlingProxy,
    agent_of,
    partition_of,
    split_target,
)
from devtools.seaweed import SeaweedServer


class Clock:
    def __init__(self) -> None:
        self.now = 10.0

    def __call__(self) -> float:
        return self.now


def test_split_target_path_style() -> None:
    assert split_target("/fleet/20261202/h/a01-000001.dat?x-id=PutObject") == (
        "fleet",
        "20261202/h/a01-000001.dat",
    )
    assert split_target("/fleet/a%20b") == ("fleet", "a b")
    assert split_target("/fleet") is None
    assert split_target("/") is None


def test_partition_is_the_first_segment_optionally_cut() -> None:
    assert partition_of("20261202/fleet-01/a01-1.dat") == "20261202"
    assert partition_of("3f9c2e1a-aaaa/a01-1.dat", chars=2) == "3f"
    assert partition_of("flat-key") == "flat-key"


def test_agent_from_the_file_name() -> None:
    assert agent_of("20261202/fleet-03/a03-000017.dat") == 3
    assert agent_of("a12-000001.dat") == 12
    assert agent_of(".spool_tool-preflight/abc") is None


def test_partition_buckets_admit_the_rate_per_partition() -> None:
    clock = Clock()
    buckets = PartitionBuckets(rate=10.0, burst=2.0, clock=clock)
    assert [buckets.admit("p") for _ in range(3)] == [True, True, False]
    assert buckets.admit("q")  # another partition has its own bucket
    clock.now += 0.15  # one more token (and a half)
    assert [buckets.admit("p") for _ in range(2)] == [True, False]
    clock.now += 100.0
    assert [buckets.admit("p") for _ in range(3)] == [True, True, False]  # burst caps the refill


def test_jain_index() -> None:
    assert jain_index([5.0, 5.0, 5.0, 5.0]) == 1.0
    assert jain_index([8.0, 0.0, 0.0, 0.0]) == pytest.approx(0.25)
    assert jain_index([0.0, 0.0]) == 1.0


def test_proxy_answers_slowdown_above_the_rate_and_stores_nothing_then(
    seaweed: SeaweedServer, s3_bucket: str
) -> None:
    with ThrottlingProxy(seaweed.endpoint_url, rate=0.5, burst=3.0) as proxy:
        client = seaweed.client(
            endpoint_url=proxy.url, config=Config(retries={"total_max_attempts": 1})
        )
        codes = []
        for n in range(5):
            try:
                client.put_object(Bucket=s3_bucket, Key=f"day/a07-{n:06d}.dat", Body=b"x")
                codes.append("ok")
            except ClientError as exc:
                codes.append(exc.response["Error"]["Code"])
        client.put_object(Bucket=s3_bucket, Key="other/a07-000099.dat", Body=b"x")
    assert codes == ["ok", "ok", "ok", "SlowDown", "SlowDown"]
    assert proxy.throttled == 2
    assert proxy.agents[7].requests["PUT"] == 6
    assert proxy.partitions == {"day": 5, "other": 1}
    listed = seaweed.client().list_objects_v2(Bucket=s3_bucket)
    assert sorted(o["Key"] for o in listed["Contents"]) == [
        *(f"day/a07-{n:06d}.dat" for n in range(3)),
        "other/a07-000099.dat",
    ]
