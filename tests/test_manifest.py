"""Upload manifests (``--manifest``) against SeaweedFS: content read back and parsed, one per
run that uploaded, exactly once across SIGKILLed runs and failed PUTs; start-up validation."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.faults.proxy import FaultProxy, FaultRule
from tests.helpers import (
    Daemon,
    assert_one_line_error,
    get_body,
    list_objects,
    make_files,
    open_multipart_uploads,
    run_cli,
)
from tests.test_crash_safety import crash_env

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from devtools.seaweed import SeaweedServer

MANIFEST = "_manifests/{hostname}/{now}-{uuid4}.jsonl"
UNIQUE = "{uuid4}/{fname}"  # a rerun after a crash must reuse the journaled key


def manifests(client: S3Client, bucket: str, prefix: str = "_manifests/") -> dict[str, list[Any]]:
    """Every manifest in the bucket: key -> its parsed lines."""
    return {
        key: [json.loads(line) for line in get_body(client, bucket, key).decode().splitlines()]
        for key in list_objects(client, bucket, prefix)
    }


def data_objects(client: S3Client, bucket: str) -> dict[str, int]:
    return {k: v for k, v in list_objects(client, bucket).items() if not k.startswith("_")}


def assert_listed_exactly_once(client: S3Client, bucket: str) -> list[dict[str, Any]]:
    """Every data object is in exactly one manifest, once; no entry names anything else."""
    entries = [entry for lines in manifests(client, bucket).values() for entry in lines]
    counts = Counter(entry["key"] for entry in entries)
    assert [key for key, n in counts.items() if n > 1] == []
    assert set(counts) == set(data_objects(client, bucket))
    return entries


def ship(spool: Path, bucket: str, env: dict[str, str], *extra: str) -> Any:
    return run_cli(
        "--manifest", MANIFEST, "--format", UNIQUE, *extra, spool, f"s3://{bucket}", env=env
    )


@pytest.mark.parametrize("engine", ["obstore", "boto3"])
def test_manifest_lists_every_object_with_its_facts(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, engine: str
) -> None:
    contents = make_files(spool_dir / "new", 5, size=200)
    big = spool_dir / "new" / "big.bin"
    big.write_bytes(os.urandom(6 << 20))  # multipart: 5 MiB parts
    contents["big.bin"] = big.read_bytes()
    mtimes = {name: (spool_dir / "new" / name).stat().st_mtime_ns for name in contents}
    before = time.time()
    result = run_cli(
        "--manifest", MANIFEST, "--hostname", "host-a", "--format", "{fname}",
        "--engine", engine, "--multipart-threshold", "5MiB", "--part-size", "5MiB",
        spool_dir, f"s3://{s3_bucket}/pre", env=seaweed.env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    client = seaweed.client()
    (key,) = list_objects(client, s3_bucket, "pre/_manifests/")
    assert key.startswith("pre/_manifests/host-a/")  # under the destination prefix
    now_token = int(key.split("/")[-1].split("-")[0])
    assert before - 1 <= now_token <= time.time()
    head = client.head_object(Bucket=s3_bucket, Key=key)
    assert head["ContentType"] == "application/x-ndjson"
    assert f"wrote manifest s3://{s3_bucket}/{key} (6 entries" in result.stderr
    assert "manifests=1" in result.stderr
    lines = manifests(client, s3_bucket, "pre/_manifests/")[key]
    assert sorted(e["source"] for e in lines) == sorted(contents)
    for entry in lines:
        name = entry["source"]
        obj = client.head_object(Bucket=s3_bucket, Key=entry["key"], ChecksumMode="ENABLED")
        assert entry["v"] == 1
        assert entry["bucket"] == s3_bucket
        assert entry["key"] == f"pre/{name}"
        assert entry["size"] == len(contents[name]) == obj["ContentLength"]
        assert entry["etag"] == obj["ETag"].strip('"')
        algorithm, value = entry["checksum"].split(":")
        assert obj.get(f"Checksum{algorithm}") == value  # as S3 stored it
        assert entry["spool_dir"] == str(spool_dir)
        assert entry["hostname"] == "host-a"
        assert entry["source_mtime"] == _rfc3339(mtimes[name])
        assert entry["uploaded_at"].endswith("Z")
        assert set(entry) == {
            "v", "bucket", "key", "size", "etag", "checksum", "source", "spool_dir",
            "hostname", "source_mtime", "uploaded_at",
        }  # fmt: skip
    # Nothing more to upload: the next run writes no manifest.
    (spool_dir / "completed").mkdir(exist_ok=True)
    again = run_cli("--manifest", MANIFEST, spool_dir, f"s3://{s3_bucket}/pre", env=seaweed.env())
    assert again.returncode == 0, again.stderr
    assert len(list_objects(client, s3_bucket, "pre/_manifests/")) == 1


def _rfc3339(ns: int) -> str:
    from spool_tool.manifest import rfc3339  # noqa: PLC0415 - the one formatter

    text = rfc3339(ns)
    assert text is not None
    return text


def test_each_run_that_uploaded_writes_one_manifest_of_its_files(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path
) -> None:
    for batch in range(3):
        make_files(spool_dir / "new", 4, prefix=f"b{batch}-")
        assert ship(spool_dir, s3_bucket, seaweed.env()).returncode == 0
    client = seaweed.client()
    found = manifests(client, s3_bucket)
    assert len(found) == 3
    assert sorted(len(lines) for lines in found.values()) == [4, 4, 4]
    assert_listed_exactly_once(client, s3_bucket)


def test_daemon_writes_a_manifest_per_cycle_that_uploaded_and_none_when_idle(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path
) -> None:
    env = {**os.environ, **seaweed.env()}
    client = seaweed.client()
    daemon = Daemon(
        "--interval", "0.3", "--manifest", MANIFEST, str(spool_dir), f"s3://{s3_bucket}", env=env
    )
    try:
        make_files(spool_dir / "new", 3, prefix="first-")
        _wait_for(lambda: len(manifests(client, s3_bucket)) == 1)
        time.sleep(1.5)  # several idle cycles (rescans every 0.3 s)
        assert len(manifests(client, s3_bucket)) == 1
        make_files(spool_dir / "new", 2, prefix="second-")
        _wait_for(lambda: len(manifests(client, s3_bucket)) == 2)
        assert daemon.stop() == 0
    finally:
        daemon.close()
    assert len(daemon.matching("wrote manifest")) == 2
    entries = assert_listed_exactly_once(client, s3_bucket)
    assert len(entries) == 5


def _wait_for(check: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.mark.parametrize(
    ("point", "skip"),
    [
        ("after_claim", 0),
        ("after_upload", 3),
        ("after_link", 2),
        ("after_move", 5),
        ("before_manifest_claim", 0),
        ("after_manifest_claim", 0),
        ("after_manifest_put", 0),
    ],
)
def test_sigkill_anywhere_lists_every_object_in_exactly_one_manifest(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, point: str, skip: int
) -> None:
    """The issue's independent check: SIGKILL at each crash point, rerun (with more files),
    and every uploaded object is in exactly one manifest, no entry in two."""
    contents = make_files(spool_dir / "new", 20, size=300)
    crashed = ship(spool_dir, s3_bucket, crash_env(seaweed, point, skip), "--concurrency", "4")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    contents |= make_files(spool_dir / "new", 3, prefix="later-")
    rerun = ship(spool_dir, s3_bucket, seaweed.env())
    assert rerun.returncode == 0, rerun.stderr
    client = seaweed.client()
    assert len(data_objects(client, s3_bucket)) == len(contents)
    entries = assert_listed_exactly_once(client, s3_bucket)
    assert sorted(e["source"] for e in entries) == sorted(contents)
    assert open_multipart_uploads(client, s3_bucket) == []
    # A third run has nothing left to list.
    assert ship(spool_dir, s3_bucket, seaweed.env()).returncode == 0
    assert_listed_exactly_once(client, s3_bucket)


@pytest.mark.parametrize(("point", "skip"), [("after_link", 3), ("after_move", 4)])
def test_nested_spool_killed_after_moving_lists_relative_paths_exactly_once(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, point: str, skip: int
) -> None:
    """--recursive with --manifest: a kill after some files reached completed/<subdir>/ but
    before their completion was committed; the rerun finds them in the mirrored tree and every
    object is listed exactly once, its ``source`` the path relative to new/."""
    new = spool_dir / "new"
    contents: dict[str, bytes] = {}
    for sub in ("a", "a/b", "c"):
        (new / sub).mkdir(parents=True, exist_ok=True)
        made = make_files(new / sub, 4, size=200, prefix=sub.replace("/", "-") + "-")
        contents |= {f"{sub}/{name}": body for name, body in made.items()}
    contents |= make_files(new, 2, size=200, prefix="top-")
    crashed = ship(
        spool_dir, s3_bucket, crash_env(seaweed, point, skip), "--recursive", "--concurrency", "2"
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    rerun = ship(spool_dir, s3_bucket, seaweed.env(), "--recursive")
    assert rerun.returncode == 0, rerun.stderr
    client = seaweed.client()
    assert len(data_objects(client, s3_bucket)) == len(contents)
    entries = assert_listed_exactly_once(client, s3_bucket)
    assert sorted(e["source"] for e in entries) == sorted(contents)
    for rel, body in contents.items():
        assert (spool_dir / "completed" / rel).read_bytes() == body  # mirrored
    assert not [p for p in new.rglob("*") if p.is_file()]


def test_killed_after_manifest_put_rewrites_the_same_key_with_the_same_bytes(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path
) -> None:
    make_files(spool_dir / "new", 6)
    crashed = ship(spool_dir, s3_bucket, crash_env(seaweed, "after_manifest_put"))
    assert crashed.returncode == -signal.SIGKILL
    client = seaweed.client()
    (key,) = list_objects(client, s3_bucket, "_manifests/")
    first = get_body(client, s3_bucket, key)
    rerun = ship(spool_dir, s3_bucket, seaweed.env())
    assert rerun.returncode == 0, rerun.stderr
    assert list(list_objects(client, s3_bucket, "_manifests/")) == [key]
    assert get_body(client, s3_bucket, key) == first


def test_killed_before_manifest_with_no_new_files_writes_it_next_run(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path
) -> None:
    """The next run has nothing to upload; it still sends the killed run's entries."""
    make_files(spool_dir / "new", 4)
    crashed = ship(spool_dir, s3_bucket, crash_env(seaweed, "before_manifest_claim"))
    assert crashed.returncode == -signal.SIGKILL
    client = seaweed.client()
    assert manifests(client, s3_bucket) == {}
    assert list((spool_dir / "new").iterdir()) == []
    rerun = ship(spool_dir, s3_bucket, seaweed.env())
    assert rerun.returncode == 0, rerun.stderr
    assert len(assert_listed_exactly_once(client, s3_bucket)) == 4


def test_failed_manifest_put_keeps_its_entries_for_the_next_run(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path
) -> None:
    make_files(spool_dir / "new", 5)
    client = seaweed.client()
    with FaultProxy(seaweed.endpoint_url) as proxy:
        rule = FaultRule(action="status", status=500, code="InternalError", path_contains="_m")
        proxy.set_rules([rule])
        env = {**seaweed.env(), "AWS_ENDPOINT_URL": proxy.url, "AWS_ENDPOINT_URL_S3": proxy.url}
        failed = ship(spool_dir, s3_bucket, env, "--max-attempts", "2")
    assert failed.returncode == 1, failed.stderr
    assert "failed manifest s3://" in failed.stderr
    assert "manifest_failed=1" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert list((spool_dir / "new").iterdir()) == []  # the files themselves shipped
    assert len(data_objects(client, s3_bucket)) == 5
    assert manifests(client, s3_bucket) == {}
    make_files(spool_dir / "new", 2, prefix="next-")
    rerun = ship(spool_dir, s3_bucket, seaweed.env())
    assert rerun.returncode == 0, rerun.stderr
    found = manifests(client, s3_bucket)
    # The failed manifest (same key, its 5 entries), then a new one for this run's 2 files.
    assert sorted(len(lines) for lines in found.values()) == [2, 5]
    assert_listed_exactly_once(client, s3_bucket)


def test_manifest_under_no_clobber_after_a_kill_is_not_stuck(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path
) -> None:
    """The re-PUT of a manifest that landed gets 412: its key is its own, so it is written."""
    make_files(spool_dir / "new", 3)
    crashed = ship(spool_dir, s3_bucket, crash_env(seaweed, "after_manifest_put"), "--no-clobber")
    assert crashed.returncode == -signal.SIGKILL
    rerun = ship(spool_dir, s3_bucket, seaweed.env(), "--no-clobber")
    assert rerun.returncode == 0, rerun.stderr
    assert len(assert_listed_exactly_once(seaweed.client(), s3_bucket)) == 3


def test_large_manifest_goes_multipart(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path
) -> None:
    make_files(spool_dir / "new", 40, size=10)
    result = ship(
        spool_dir, s3_bucket, seaweed.env(), "--multipart-threshold", "4KiB", "--part-size", "5MiB"
    )
    assert result.returncode == 0, result.stderr
    client = seaweed.client()
    assert len(assert_listed_exactly_once(client, s3_bucket)) == 40
    assert open_multipart_uploads(client, s3_bucket) == []


def test_noop_destination_and_dry_run_write_no_manifest(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path
) -> None:
    make_files(spool_dir / "new", 2)
    dry = ship(spool_dir, s3_bucket, seaweed.env(), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"would write manifest s3://{s3_bucket}/_manifests/" in dry.stdout
    assert "(2 entries)" in dry.stdout
    assert list_objects(seaweed.client(), s3_bucket) == {}
    noop = run_cli("--manifest", MANIFEST, spool_dir, "noop")
    assert noop.returncode == 0, noop.stderr
    assert "manifest" not in noop.stderr


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("_m/{now}.jsonl", "needs {uuid4}"),
        ("_m/{fname}-{uuid4}", "unknown token {fname}"),
        ("/_m/{uuid4}", "must not start with '/'"),
        ("_m/{uuid4", "valid tokens"),
    ],
)
def test_bad_manifest_template_is_a_one_line_usage_error(
    tmp_path: Path, template: str, reason: str
) -> None:
    (tmp_path / "new").mkdir()
    result = run_cli("--manifest", template, tmp_path, "s3://bucket")
    assert result.returncode == 2
    assert_one_line_error(result.stderr)
    assert f"invalid --manifest {template!r}" in result.stderr
    assert reason in result.stderr
    env_result = run_cli(tmp_path, "s3://bucket", env={"SPOOL_TOOL_MANIFEST": template})
    assert env_result.returncode == 2
    assert "invalid SPOOL_TOOL_MANIFEST" in env_result.stderr
