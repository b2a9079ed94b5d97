"""Crash points (SIGKILL), reruns and concurrent runs: exactly one object per file, nothing lost.

A subprocess SIGKILLs itself at a named point (``SPOOL_TOOL_CRASH_AT``, armed only with
``SPOOL_TOOL_TESTING=1``); the rerun must finish the job without a second object, even with
``{uuid4}`` and ``{now}`` in the key template.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.faults.proxy import FaultProxy, FaultRule
from tests.helpers import (
    SPOOL_TOOL,
    get_body,
    list_objects,
    make_files,
    open_multipart_uploads,
    run_cli,
)

if TYPE_CHECKING:
    from devtools.seaweed import SeaweedServer

UNIQUE = "{uuid4}/{now}-{fname}"


def crash_env(seaweed: SeaweedServer, point: str, skip: int = 0) -> dict[str, str]:
    return {
        **seaweed.env(),
        "SPOOL_TOOL_TESTING": "1",
        "SPOOL_TOOL_CRASH_AT": point,
        "SPOOL_TOOL_CRASH_SKIP": str(skip),
    }


def assert_exactly_once(
    seaweed: SeaweedServer, bucket: str, spool: Path, contents: dict[str, bytes]
) -> None:
    client = seaweed.client()
    objects = list_objects(client, bucket)
    bodies = sorted(get_body(client, bucket, key) for key in objects)
    assert len(objects) == len(contents), sorted(objects)
    assert bodies == sorted(contents.values())
    assert list((spool / "new").iterdir()) == []
    assert sorted(p.name for p in (spool / "completed").iterdir()) == sorted(contents)
    assert open_multipart_uploads(client, bucket) == []


@pytest.mark.parametrize(
    ("point", "skip"),
    [("after_claim", 0), ("after_upload", 0), ("after_upload", 7), ("after_move", 5)],
)
def test_sigkill_then_rerun_uploads_each_file_once(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, point: str, skip: int
) -> None:
    contents = make_files(spool_dir / "new", 30, size=300)
    crashed = run_cli(
        "--format",
        UNIQUE,
        "--concurrency",
        "4",
        spool_dir,
        f"s3://{s3_bucket}",
        env=crash_env(seaweed, point, skip),
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    rerun = run_cli("--format", UNIQUE, spool_dir, f"s3://{s3_bucket}", env=seaweed.env())
    assert rerun.returncode == 0, rerun.stderr
    assert_exactly_once(seaweed, s3_bucket, spool_dir, contents)


def test_sigkill_mid_multipart_is_aborted_by_rerun(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path
) -> None:
    data = os.urandom(12 * 1024 * 1024)
    (spool_dir / "new" / "big.bin").write_bytes(data)
    args = ["--format", UNIQUE, "--multipart-threshold", "5MiB", "--part-size", "5MiB"]
    crashed = run_cli(*args, spool_dir, f"s3://{s3_bucket}", env=crash_env(seaweed, "mid_upload"))
    assert crashed.returncode == -signal.SIGKILL
    client = seaweed.client()
    assert len(open_multipart_uploads(client, s3_bucket)) == 1
    rerun = run_cli(*args, spool_dir, f"s3://{s3_bucket}", env=seaweed.env())
    assert rerun.returncode == 0, rerun.stderr
    assert_exactly_once(seaweed, s3_bucket, spool_dir, {"big.bin": data})


def test_sigkill_after_multipart_upload_only_moves_on_rerun(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path
) -> None:
    data = os.urandom(6 * 1024 * 1024)
    (spool_dir / "new" / "big.bin").write_bytes(data)
    args = ["--format", UNIQUE, "--multipart-threshold", "5MiB", "--part-size", "5MiB", "-v"]
    crashed = run_cli(*args, spool_dir, f"s3://{s3_bucket}", env=crash_env(seaweed, "after_upload"))
    assert crashed.returncode == -signal.SIGKILL
    # the journal marks big uploads as done, so the rerun must not send the object again
    client = seaweed.client()
    (key,) = list_objects(client, s3_bucket)
    client.put_object(Bucket=s3_bucket, Key=key, Body=b"marker")  # a re-upload would replace it
    rerun = run_cli(*args, spool_dir, f"s3://{s3_bucket}", env=seaweed.env())
    assert rerun.returncode == 0, rerun.stderr
    assert get_body(client, s3_bucket, key) == b"marker"
    assert (spool_dir / "completed" / "big.bin").read_bytes() == data


def test_sigkill_mid_cleanup_then_rerun(spool_dir: Path) -> None:
    completed = spool_dir / "completed"
    completed.mkdir()
    old = time.time() - 3 * 3600
    for i in range(10):
        path = completed / f"old{i}"
        path.write_text("x")
        os.utime(path, (old, old))
    (completed / "young").write_text("y")
    env = {
        "SPOOL_TOOL_TESTING": "1",
        "SPOOL_TOOL_CRASH_AT": "mid_cleanup",
        "SPOOL_TOOL_CRASH_SKIP": "3",
    }
    crashed = run_cli("--no-upload", spool_dir, "noop", env=env)
    assert crashed.returncode == -signal.SIGKILL
    assert len(list(completed.iterdir())) == 7
    rerun = run_cli("--no-upload", spool_dir, "noop")
    assert rerun.returncode == 0
    assert [p.name for p in completed.iterdir()] == ["young"]


def test_three_concurrent_runs_upload_each_file_once(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path
) -> None:
    contents = make_files(spool_dir / "new", 300, size=200)
    env = {**os.environ, **seaweed.env()}
    procs = [
        subprocess.Popen(
            [*SPOOL_TOOL, "--format", UNIQUE, str(spool_dir), f"s3://{s3_bucket}"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    codes = [p.returncode for p in procs]
    for _, stderr in outputs:
        assert "Traceback" not in stderr
    assert codes == [0, 0, 0]
    leftover = list((spool_dir / "new").iterdir())
    if leftover:  # a run skipped the busy spool before the first finished: finish it
        assert (
            run_cli(
                "--format", UNIQUE, spool_dir, f"s3://{s3_bucket}", env=seaweed.env()
            ).returncode
            == 0
        )
    assert_exactly_once(seaweed, s3_bucket, spool_dir, contents)


def test_file_appended_during_upload_is_not_moved_and_rerun_uses_same_key(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path
) -> None:
    path = spool_dir / "new" / "growing.log"
    path.write_bytes(b"first part\n")
    with FaultProxy(seaweed.endpoint_url) as proxy:
        proxy.set_rules([FaultRule(action="stall_before", stall_seconds=1.5, times=1)])
        env = {**seaweed.env(), "AWS_ENDPOINT_URL": proxy.url, "AWS_ENDPOINT_URL_S3": proxy.url}

        def append_later() -> None:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not any(
                r.method == "PUT" for r in proxy.history()
            ):
                time.sleep(0.02)  # wait until the PUT (with the old bytes) is in flight
            with path.open("ab") as fh:
                fh.write(b"second part\n")

        writer = threading.Thread(target=append_later)
        writer.start()
        first = run_cli("--format", UNIQUE, spool_dir, f"s3://{s3_bucket}", env=env)
        writer.join()
    assert first.returncode == 1
    assert "changed while uploading" in first.stderr
    assert path.exists()
    client = seaweed.client()
    (key,) = list_objects(client, s3_bucket)
    rerun = run_cli("--format", UNIQUE, spool_dir, f"s3://{s3_bucket}", env=seaweed.env())
    assert rerun.returncode == 0, rerun.stderr
    assert list_objects(client, s3_bucket) == {key: len(b"first part\nsecond part\n")}
    assert get_body(client, s3_bucket, key) == b"first part\nsecond part\n"


def test_sigterm_mid_run_exits_cleanly_and_rerun_completes(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path
) -> None:
    contents = make_files(spool_dir / "new", 400, size=100)
    with FaultProxy(seaweed.endpoint_url) as proxy:
        proxy.set_rules([FaultRule(action="stall_before", stall_seconds=0.05)])
        env = {
            **os.environ,
            **seaweed.env(),
            "AWS_ENDPOINT_URL": proxy.url,
            "AWS_ENDPOINT_URL_S3": proxy.url,
        }
        proc = subprocess.Popen(
            [
                *SPOOL_TOOL,
                "--format",
                UNIQUE,
                "--concurrency",
                "4",
                str(spool_dir),
                f"s3://{s3_bucket}",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(2.0)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr
    assert "SIGTERM" in stderr
    moved = len(list((spool_dir / "completed").iterdir()))
    assert 0 < moved < len(contents)
    rerun = run_cli("--format", UNIQUE, spool_dir, f"s3://{s3_bucket}", env=seaweed.env())
    assert rerun.returncode == 0, rerun.stderr
    assert_exactly_once(seaweed, s3_bucket, spool_dir, contents)
