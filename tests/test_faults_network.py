"""FAULT-MATRIX rows 1-8 and 10: S3 misbehaving on the wire, against a real server (SeaweedFS).

Faults come from ``tests.faults.proxy.FaultProxy`` (in front of SeaweedFS: 5xx, resets, stalls,
answers replaced after the write was applied) or from the in-process botocore ``before-send``
hook (``tests.faults.hooks``: canned ``ExpiredToken`` / ``RequestTimeTooSkewed``).

Most runs are in-process (``spool_tool.run.run``) so the hook can be installed on the real S3
client and timeouts/attempts can be lowered; botocore's retry *decisions* are real, only its
backoff sleep is shortened (``_fast_backoff``), except in the sustained-throttling test, which
runs the CLI in a subprocess with the real backoff to show the run is bounded in time.

Every key template holds ``{uuid4}``: a second object for the same file would show up as a
second key, so "exactly one object per file at the key fixed before the first attempt" is checked
by comparing the final bucket listing with the key each file was given in its first run.
"""

from __future__ import annotations

import importlib.util
import io
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pytest

from spool_tool.events import RunStopped, Summary
from spool_tool.journal import Journal
from spool_tool.observe.logs import LogWriter
from spool_tool.run import run
from tests.faults.hooks import (
    EXPIRED_TOKEN,
    REQUEST_TIME_TOO_SKEWED,
    FaultPlan,
    InstalledFaults,
    fault,
)
from tests.faults.proxy import FaultProxy, FaultRule
from tests.faults.runs import (
    UNIQUE,
    MiB,
    Recorder,
    assert_retry_ok,
    big_file,
    hooked,
    make_config,
    run_until_done,
)
from tests.helpers import (
    SPOOL_TOOL,
    get_body,
    list_objects,
    make_files,
    open_multipart_uploads,
    run_cli,
    snapshot,
)

if TYPE_CHECKING:
    from devtools.seaweed import SeaweedServer

pytestmark = pytest.mark.usefixtures("fast_backoff")


# ------------------------------------------------------------------------------- fixtures


# ------------------------------------------------------------------------------- rows 1 and 3

FLAKY_RULES = {
    # Row 1: 30% of PUTs/POSTs (PutObject, UploadPart, Create/CompleteMultipartUpload) answered
    # 503 SlowDown or 500 InternalError (15% each) without being forwarded.
    "5xx": [
        FaultRule(action="status", status=503, code="SlowDown", probability=0.15),
        FaultRule(action="status", status=500, code="InternalError", probability=0.15 / 0.85),
    ],
    # Row 3: 30% of PUTs/POSTs reset (RST) after about half of the request body.
    "reset": [FaultRule(action="reset_mid_body", probability=0.3)],
}


@pytest.mark.parametrize("kind", sorted(FLAKY_RULES))
def test_flaky_s3_reruns_until_done_then_exactly_once(
    seaweed: SeaweedServer,
    s3_bucket: str,
    spool_dir: Path,
    proxy: FaultProxy,
    s3_env: None,
    kind: str,
) -> None:
    """Rows 1 and 3: retries inside a run, reruns (same journaled key) across runs."""
    new = spool_dir / "new"
    contents = make_files(new, 24, size=3000)
    contents["big.bin"] = big_file(new / "big.bin", 11 * MiB)  # 3 parts
    # f00003.dat fails every attempt of its first run (max_attempts=3), so a rerun is needed.
    doomed = FaultRule(action="status", path_contains="f00003.dat", times=3)
    if kind == "reset":
        doomed = FaultRule(action="reset_mid_body", path_contains="f00003.dat", times=3)
    proxy.set_rules([doomed, *FLAKY_RULES[kind]])
    recorder = Recorder(s3_bucket)
    config = make_config(spool_dir, s3_bucket, proxy.url, max_attempts=3, multipart=True)

    runs, summary = run_until_done(config, recorder, runs=10)

    assert summary.ok, summary.failures
    assert runs >= 2  # f00003.dat needed the next run
    assert proxy.stats.faults_total > 10
    fatal = [e for e in recorder.events if isinstance(e, RunStopped)]
    assert fatal == [], "a transient fault stopped the run as if fatal"
    assert {e.kind for e in recorder.failed()} == {"retryable"}
    assert_retry_ok(seaweed.client(), s3_bucket, spool_dir, contents, recorder.keys())


# ------------------------------------------------------------------------------- row 2


def test_sustained_throttling_stops_early_then_rerun_ships_everything(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, proxy: FaultProxy
) -> None:
    """Row 2: every PUT answered 503 -> the run gives up after a bounded number of files, in
    bounded time, exit 1, nothing moved; once S3 is healthy the rerun ships each file once."""
    contents = make_files(spool_dir / "new", 80, size=500)
    before = snapshot(spool_dir / "new")
    proxy.set_rules([FaultRule(action="status", status=503, code="SlowDown")])
    env = {**seaweed.env(), "AWS_ENDPOINT_URL": proxy.url, "AWS_ENDPOINT_URL_S3": proxy.url}
    args = ["--format", UNIQUE, "--concurrency", "4", "--max-attempts", "2", "-v"]

    started = time.monotonic()
    throttled = run_cli(*args, spool_dir, f"s3://{s3_bucket}", env=env, timeout=60)
    elapsed = time.monotonic() - started

    assert throttled.returncode == 1, throttled.stderr
    assert "Traceback" not in throttled.stderr
    assert "S3 kept failing" in throttled.stderr
    failed = [line for line in throttled.stderr.splitlines() if "ERROR failed " in line]
    # pipeline.TRANSIENT_FAILURE_LIMIT (20) in a row, plus at most the 4 in flight.
    assert 20 <= len(failed) <= 24, throttled.stderr
    assert all("SlowDown" in line and s3_bucket in line for line in failed)
    assert elapsed < 30  # real botocore backoff, 2 attempts per file, 4 at a time
    assert proxy.stats.by_method.get("PUT", 0) <= 2 * 24  # no retry storm
    assert snapshot(spool_dir / "new") == before
    assert not (spool_dir / "completed").exists() or not any((spool_dir / "completed").iterdir())
    client = seaweed.client()
    assert list_objects(client, s3_bucket) == {}

    proxy.clear()  # S3 recovers
    first_keys = {}
    for line in failed:  # "... failed PATH -> s3://BUCKET/KEY: SlowDown: ..."
        uri = line.split(" -> ", 1)[1].split(": ", 1)[0]
        key = uri.removeprefix(f"s3://{s3_bucket}/")
        first_keys[key.rsplit("/", 1)[-1]] = key
    healthy = run_cli(*args, spool_dir, f"s3://{s3_bucket}", env=env, timeout=60)
    assert healthy.returncode == 0, healthy.stderr
    for line in healthy.stderr.splitlines():  # "... uploaded PATH -> s3://BUCKET/KEY (...)"
        if " uploaded " in line:
            key = line.split(" -> ", 1)[1].split(" (", 1)[0].removeprefix(f"s3://{s3_bucket}/")
            first_keys.setdefault(key.rsplit("/", 1)[-1], key)
    assert_retry_ok(client, s3_bucket, spool_dir, contents, first_keys)


# ------------------------------------------------------------------------------- rows 4 and 5


def test_stall_shorter_than_read_timeout_completes_in_one_attempt(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, proxy: FaultProxy, s3_env: None
) -> None:
    """Row 4: a 2 s stall before every PUT, read timeout 6 s: completes, nothing retried."""
    contents = make_files(spool_dir / "new", 3, size=2000)
    proxy.set_rules([FaultRule(action="stall_before", methods=frozenset({"PUT"}), stall_seconds=2)])
    recorder = Recorder(s3_bucket)
    config = make_config(spool_dir, s3_bucket, proxy.url, max_attempts=3, read_timeout=6)

    summary = run(config, [recorder])

    assert summary.ok, summary.failures
    assert proxy.stats.faults == {"stall_before": 3}
    assert proxy.stats.by_method["PUT"] == 3  # one attempt each
    assert_retry_ok(seaweed.client(), s3_bucket, spool_dir, contents, recorder.keys())


def test_stall_longer_than_read_timeout_before_the_write_is_retry_ok(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, proxy: FaultProxy, s3_env: None
) -> None:
    """Row 5: the request is held (not forwarded) past the 1 s read timeout. once.dat stalls on
    its first attempt only (botocore's retry succeeds); always.dat on every attempt (it stays in
    new/ and the next run ships it under the same key)."""
    new = spool_dir / "new"
    contents = {"once.dat": b"once" * 100, "always.dat": b"always" * 100}
    for name, data in contents.items():
        (new / name).write_bytes(data)
    proxy.set_rules(
        [
            FaultRule(action="stall_before", path_contains="once.dat", stall_seconds=5, times=1),
            FaultRule(action="stall_before", path_contains="always.dat", stall_seconds=5),
        ]
    )
    recorder = Recorder(s3_bucket)
    config = make_config(spool_dir, s3_bucket, proxy.url, max_attempts=2, read_timeout=1)

    first = run(config, [recorder])

    assert not first.ok
    (failure,) = recorder.failed()
    assert failure.path == new / "always.dat"
    assert failure.kind == "retryable"
    assert "timeout" in failure.message.lower()
    assert (new / "always.dat").read_bytes() == contents["always.dat"]
    assert (spool_dir / "completed" / "once.dat").exists()
    assert proxy.stats.faults == {"stall_before": 3}

    proxy.clear()
    second = run(config, [recorder])
    assert second.ok, second.failures
    assert_retry_ok(seaweed.client(), s3_bucket, spool_dir, contents, recorder.keys())


# ------------------------------------------------------------------------------- row 6

AMBIGUOUS = {
    # The PUT is forwarded and stored, then the client is told 500 (every attempt).
    "status_after_forward": FaultRule(
        action="status_after_forward",
        methods=frozenset({"PUT"}),
        path_contains="ambiguous.dat",
        status=500,
        code="InternalError",
    ),
    # The PUT is forwarded and stored, then the answer is held past the read timeout.
    "stall_after": FaultRule(
        action="stall_after",
        methods=frozenset({"PUT"}),
        path_contains="ambiguous.dat",
        stall_seconds=5,
    ),
}


@pytest.mark.parametrize("action", sorted(AMBIGUOUS))
def test_ambiguous_success_rerun_reuses_the_journaled_key(
    seaweed: SeaweedServer,
    s3_bucket: str,
    spool_dir: Path,
    proxy: FaultProxy,
    s3_env: None,
    action: str,
) -> None:
    """Row 6: the write was applied but the client saw a failure on every attempt; the file
    stays, and the rerun writes to the same ({uuid4}) key: one object, not two."""
    new = spool_dir / "new"
    contents = {"ambiguous.dat": b"applied twice? " * 50, "plain.dat": b"plain" * 10}
    for name, data in contents.items():
        (new / name).write_bytes(data)
    proxy.set_rules([AMBIGUOUS[action]])
    recorder = Recorder(s3_bucket)
    config = make_config(spool_dir, s3_bucket, proxy.url, max_attempts=2, read_timeout=1)

    first = run(config, [recorder])

    assert not first.ok
    (failure,) = recorder.failed()
    assert failure.path == new / "ambiguous.dat"
    assert (new / "ambiguous.dat").exists()
    key = recorder.keys()["ambiguous.dat"]
    client = seaweed.client()
    assert get_body(client, s3_bucket, key) == contents["ambiguous.dat"]  # it WAS applied

    proxy.clear()
    second = run(config, [recorder])
    assert second.ok, second.failures
    assert_retry_ok(client, s3_bucket, spool_dir, contents, recorder.keys())


# ------------------------------------------------------------------------------- row 7

COMPLETE_ERRORS = {
    # Applied, answered 500 once: botocore retries the Complete of a finished upload.
    "500-once": FaultRule(
        action="status_after_forward",
        methods=frozenset({"POST"}),
        path_contains="uploadId=",
        status=500,
        code="InternalError",
        times=1,
    ),
    # Applied, answered "200 OK" with an error body (S3's documented CompleteMultipartUpload
    # failure mode) once.
    "200-error-body": FaultRule(
        action="status_after_forward",
        methods=frozenset({"POST"}),
        path_contains="uploadId=",
        status=200,
        code="InternalError",
        times=1,
    ),
    # Applied, then every attempt answered 500: the run gives up on the file.
    "500-always": FaultRule(
        action="status_after_forward",
        methods=frozenset({"POST"}),
        path_contains="uploadId=",
        status=500,
        code="InternalError",
    ),
}


@pytest.mark.parametrize("variant", sorted(COMPLETE_ERRORS))
def test_complete_multipart_error_after_apply_ends_with_one_object(
    seaweed: SeaweedServer,
    s3_bucket: str,
    spool_dir: Path,
    proxy: FaultProxy,
    s3_env: None,
    variant: str,
) -> None:
    """Row 7: CompleteMultipartUpload was applied but answered with an error. Whatever the run
    concludes, at most one more (healthy) run ends with one object at the journaled key and no
    open multipart upload."""
    data = big_file(spool_dir / "new" / "big.bin", 6 * MiB)  # 2 parts
    proxy.set_rules([COMPLETE_ERRORS[variant]])
    recorder = Recorder(s3_bucket)
    config = make_config(spool_dir, s3_bucket, proxy.url, max_attempts=2, multipart=True)

    first = run(config, [recorder])
    client = seaweed.client()
    assert open_multipart_uploads(client, s3_bucket) == []
    if variant == "500-always":
        assert not first.ok
    if not first.ok:
        assert (spool_dir / "new" / "big.bin").read_bytes() == data
        proxy.clear()
        second = run(config, [recorder])
        assert second.ok, second.failures

    assert_retry_ok(client, s3_bucket, spool_dir, {"big.bin": data}, recorder.keys())


# ------------------------------------------------------------------------------- rows 8 and 10


def fail_clean_run(
    seaweed: SeaweedServer,
    bucket: str,
    spool: Path,
    plan: FaultPlan,
    *,
    concurrency: int,
    with_big: bool = False,
) -> tuple[Summary, InstalledFaults, list[str], float]:
    """Run in-process with ``plan`` hooked into the S3 client; check FAIL-CLEAN basics."""
    new = spool / "new"
    make_files(new, 30, size=400)
    if with_big:
        big_file(new / "big.bin", 6 * MiB)
    before = snapshot(new)
    installed: list[InstalledFaults] = []
    log = io.StringIO()
    config = make_config(
        spool,
        bucket,
        seaweed.endpoint_url,
        concurrency=concurrency,
        multipart=with_big,
        engine="boto3",  # the hook sees only boto3's requests
    )
    started = time.monotonic()
    summary = run(config, [LogWriter(stream=log)], destination_factory=hooked([plan], installed))
    elapsed = time.monotonic() - started
    lines = log.getvalue().splitlines()

    assert not summary.ok
    assert summary.stopped is not None
    assert "Traceback" not in log.getvalue()
    assert snapshot(new) == before  # nothing moved, deleted or touched
    assert not any((spool / "completed").iterdir())
    client = seaweed.client()
    assert list_objects(client, bucket) == {}
    assert open_multipart_uploads(client, bucket) == []
    return summary, installed[0], lines, elapsed


@pytest.mark.parametrize("multipart", [False, True], ids=["put", "multipart"])
def test_expired_token_fails_clean_and_stops_at_the_first_auth_error(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, s3_env: None, multipart: bool
) -> None:
    """Row 8: ExpiredToken on the upload: FAIL-CLEAN, fast, the run stops (no more claims).
    A wrong secret key end to end is in test_s3_seaweed (test_wrong_secret_stops_run_...)."""
    operations = {"UploadPart"} if multipart else {"PutObject"}
    plan = fault(EXPIRED_TOKEN, operations=operations)
    concurrency = 1 if multipart else 4
    summary, hook, lines, elapsed = fail_clean_run(
        seaweed, s3_bucket, spool_dir, plan, concurrency=concurrency, with_big=multipart
    )
    assert "ExpiredToken" in (summary.stopped or "")
    assert 1 <= summary.failed <= concurrency  # only what was already in flight
    # never retried: one attempt per failed request (a multipart file has up to 4 parts in
    # flight, each refused once; the upload is then aborted)
    assert all(call.attempt == 1 for call in hook.calls)
    if multipart:
        assert 1 <= plan.injected <= 4
        assert hook.attempts_of("AbortMultipartUpload") == 1
    else:
        assert plan.injected == summary.failed
    failed = [line for line in lines if "ERROR failed " in line]
    assert len(failed) == summary.failed
    for line in failed:
        assert f"s3://{s3_bucket}/" in line
        assert "ExpiredToken" in line
        assert "refresh the session credentials" in line
    assert elapsed < 10


def test_failed_upload_line_names_the_local_file(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, s3_env: None
) -> None:
    """FAIL-CLEAN promises a one-line error naming the file, bucket, key and cause."""
    plan = fault(EXPIRED_TOKEN, operations={"PutObject"})
    _, _, lines, _ = fail_clean_run(seaweed, s3_bucket, spool_dir, plan, concurrency=1)
    failed = [line for line in lines if "ERROR failed " in line]
    assert failed
    for line in failed:
        assert str(spool_dir / "new") in line, line


def test_clock_skew_fails_clean_with_ntp_hint_and_no_retry_storm(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, s3_env: None
) -> None:
    """Row 10: RequestTimeTooSkewed on every request after the pre-flight: one attempt per file
    in flight, the run stops, the message says to check NTP."""
    plan = fault(REQUEST_TIME_TOO_SKEWED, operations={"PutObject"})
    summary, hook, lines, elapsed = fail_clean_run(
        seaweed, s3_bucket, spool_dir, plan, concurrency=4
    )
    assert "RequestTimeTooSkewed" in (summary.stopped or "")
    assert 1 <= summary.failed <= 4
    assert hook.attempts_of("PutObject") == summary.failed  # not retried at all
    failed = [line for line in lines if "ERROR failed " in line]
    assert len(failed) == summary.failed
    assert all("NTP" in line and s3_bucket in line for line in failed)
    assert elapsed < 10


# ------------------------------------------------------------------------------- row 12 (SIGTERM)


def test_sigterm_during_multipart_upload_aborts_it_and_rerun_ships_once(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, proxy: FaultProxy
) -> None:
    """Row 12, SIGTERM half (SIGKILL is in test_crash_safety): a 6-part upload is interrupted
    while its first window of parts is in flight -> the upload is aborted before the next
    window, exit 128+15, no open upload, the file stays; the rerun uses the journaled key."""
    data = big_file(spool_dir / "new" / "big.bin", 26 * MiB)  # 6 parts of 5 MiB: 2 windows
    proxy.set_rules(
        [
            FaultRule(
                action="stall_before",
                methods=frozenset({"PUT"}),
                path_contains="partNumber=",
                stall_seconds=2,
                times=4,
            )
        ]
    )
    env = {**os.environ, **seaweed.env(), "AWS_ENDPOINT_URL": proxy.url}
    env["AWS_ENDPOINT_URL_S3"] = proxy.url
    args = ["--format", UNIQUE, "--multipart-threshold", "5MiB", "--part-size", "5MiB"]
    proc = subprocess.Popen(
        [*SPOOL_TOOL, *args, str(spool_dir), f"s3://{s3_bucket}"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not any("partNumber=" in r.target for r in proxy.history()):
        assert time.monotonic() < deadline, "no part was sent"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)

    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr
    client = seaweed.client()
    assert open_multipart_uploads(client, s3_bucket) == []
    assert list_objects(client, s3_bucket) == {}
    assert (spool_dir / "new" / "big.bin").read_bytes() == data
    journal = Journal.read_only(spool_dir)
    assert journal is not None
    key = journal.claims["big.bin"].key
    assert journal.claims["big.bin"].upload_id is None  # aborted, and the journal knows it
    journal.close()

    proxy.clear()
    rerun = run_cli(*args, spool_dir, f"s3://{s3_bucket}", env=env)
    assert rerun.returncode == 0, rerun.stderr
    assert_retry_ok(client, s3_bucket, spool_dir, {"big.bin": data}, {"big.bin": key})


# ------------------------------------------------------------------- rows 8, 10: any engine

AUTH_FAULTS = {
    "ExpiredToken": (400, "ExpiredToken", "refresh the session credentials"),
    "RequestTimeTooSkewed": (403, "RequestTimeTooSkewed", "NTP"),
}


def _engine_params() -> list[Any]:
    params: list[Any] = []
    for name in sorted(AUTH_FAULTS):
        params.append(pytest.param("boto3", name, id=f"boto3-{name}"))
        marks = []
        if importlib.util.find_spec("obstore") is None:
            marks = [pytest.mark.skip(reason="obstore is not installed")]
        params.append(pytest.param("obstore", name, id=f"obstore-{name}", marks=marks))
    return params


@pytest.mark.parametrize(("engine", "fault_name"), _engine_params())
def test_auth_errors_from_the_wire_fail_clean_and_stop_on_every_engine(
    seaweed: SeaweedServer,
    s3_bucket: str,
    spool_dir: Path,
    proxy: FaultProxy,
    s3_env: None,
    engine: Literal["boto3", "obstore"],
    fault_name: str,
) -> None:
    """Rows 8 and 10 through the proxy, so that the obstore single-PUT engine (which the
    botocore hook cannot see) is covered too: one attempt per file in flight, the run stops,
    nothing moved, the line names the bucket, the code and the hint."""
    status, code, hint = AUTH_FAULTS[fault_name]
    new = spool_dir / "new"
    make_files(new, 30, size=300)
    before = snapshot(new)
    proxy.set_rules(
        [FaultRule(action="status", methods=frozenset({"PUT"}), status=status, code=code)]
    )
    log = io.StringIO()
    config = make_config(spool_dir, s3_bucket, proxy.url, concurrency=4, engine=engine)

    summary = run(config, [LogWriter(stream=log)])

    failed = [line for line in log.getvalue().splitlines() if "ERROR failed " in line]
    assert 1 <= summary.failed <= 4, log.getvalue()
    assert code in (summary.stopped or ""), log.getvalue()
    assert proxy.stats.by_method.get("PUT", 0) == summary.failed  # never retried
    assert len(failed) == summary.failed
    assert all(s3_bucket in line and code in line and hint in line for line in failed), failed
    assert snapshot(new) == before
    assert not any((spool_dir / "completed").iterdir())
    assert list_objects(seaweed.client(), s3_bucket) == {}
