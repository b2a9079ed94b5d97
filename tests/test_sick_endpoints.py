"""Issue 9, network cases 3, 4, 9, 10 and 11: sick endpoints and bad AWS setups read the same,
as one line, whichever S3 data path (the obstore fast path or boto3) sends the requests.

* 3: a malformed AWS config file -> one line naming the file, exit 2.
* 4: ``--checksum crc32c`` / ``crc64nvme`` on botocore requests upload and are verified.
* 9: an endpoint that accepts connections and never answers -> bounded by the timeouts, one
  warning while retrying, one line naming the endpoint when the run gives up.
* 10: a connection reset during the boto3 path's pre-flight -> one line, exit 1; a daemon
  backs off and keeps running.
* 11: a closed or resetting port, and a wrong secret, give the same single line on both paths.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import logging
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pytest
from awscrt import checksums  # type: ignore[import-untyped]
from botocore.exceptions import ClientError

from devtools.seaweed import free_port
from spool_tool import cli
from spool_tool.observe.logs import LogHandler, LogWriter
from spool_tool.run import run
from tests.conftest import LIMITED_ACCESS_KEY, LIMITED_SECRET_KEY
from tests.faults.endpoints import SickEndpoint
from tests.faults.proxy import FaultProxy, FaultRule
from tests.faults.runs import MiB, big_file, make_config
from tests.faults.tls import TlsFront
from tests.helpers import (
    SPOOL_TOOL,
    Daemon,
    get_body,
    list_objects,
    make_files,
    run_cli,
    snapshot,
)

if TYPE_CHECKING:
    from devtools.seaweed import SeaweedServer

Engine = Literal["obstore", "boto3"]
ENGINES: list[Engine] = ["obstore", "boto3"]
# Each data path, named (object options no longer select boto3: obstore sends them).
SELECT = {"obstore": ["--engine", "obstore"], "boto3": ["--engine", "boto3"]}
_STAMP = re.compile(r"^\S+Z (?=[A-Z]+ )")


def _lines(stderr: str) -> list[str]:
    """stderr's non-empty lines without their timestamps (to compare two runs)."""
    return [_STAMP.sub("", line) for line in stderr.splitlines() if line.strip()]


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """A text log of an in-process run, the library's own warnings included (as the CLI
    routes them)."""
    stream = io.StringIO()
    root = logging.getLogger("spool_tool")
    monkeypatch.setattr(root, "handlers", [LogHandler(LogWriter(stream=stream))])
    monkeypatch.setattr(root, "propagate", False)
    root.setLevel(logging.INFO)
    return stream


@pytest.fixture
def proxy_seed() -> int:
    """This module's faults were drawn with seed 9 (conftest's ``proxy`` reads it)."""
    return 9


# ------------------------------------------------------------------------------- case 3


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    "text", ["[profile x\nregion = us-east-1\n", "[default]\nregion = us-east-1\n[profile x\n"]
)
def test_malformed_aws_config_file_is_one_line_naming_it_exit_2(
    tmp_path: Path, spool_dir: Path, engine: Engine, text: str
) -> None:
    make_files(spool_dir / "new", 2)
    before = snapshot(spool_dir)
    config = tmp_path / "aws config"
    config.write_text(text)
    env = {"AWS_CONFIG_FILE": str(config), "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"}
    url = f"http://127.0.0.1:{free_port()}"

    result = run_cli(*SELECT[engine], "--endpoint-url", url, spool_dir, "s3://bucket", env=env)

    assert result.returncode == 2, result.stderr
    (line,) = _lines(result.stderr)
    assert str(config) in line
    assert "line " in line
    assert "Traceback" not in result.stderr
    assert snapshot(spool_dir) == before


# ------------------------------------------------------------------------------- case 4


def _crc(algorithm: str, data: bytes) -> str:
    if algorithm == "crc32c":
        return base64.b64encode(checksums.crc32c(data).to_bytes(4, "big")).decode()
    return base64.b64encode(checksums.crc64nvme(data).to_bytes(8, "big")).decode()


@pytest.mark.parametrize(
    ("algorithm", "engine"),
    [("crc32c", "auto"), ("crc32c", "boto3"), ("crc64nvme", "boto3"), ("crc64nvme", "obstore")],
)
def test_crc32c_and_crc64nvme_upload_and_are_verified(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, algorithm: str, engine: str
) -> None:
    """Single PUTs and a multipart upload (botocore sends those on every engine) with the CRT
    checksums: exit 0, S3 stored the checksum we computed, and S3 refuses a wrong one."""
    new = spool_dir / "new"
    contents = make_files(new, 3, size=1000)
    contents["big.bin"] = big_file(new / "big.bin", 6 * MiB)
    args = ["--checksum", algorithm, "--engine", engine, "--multipart-threshold", "5MiB"]
    args += ["--part-size", "5MiB", "--format", "{fname}"]

    result = run_cli(*args, spool_dir, f"s3://{s3_bucket}", env=seaweed.env())

    assert result.returncode == 0, result.stderr
    client = seaweed.client()
    assert sorted(list_objects(client, s3_bucket)) == sorted(contents)
    field = f"Checksum{algorithm.upper()}"
    for name, data in contents.items():
        assert get_body(client, s3_bucket, name) == data
        if name != "big.bin":
            head = client.head_object(Bucket=s3_bucket, Key=name, ChecksumMode="ENABLED")
            assert head.get(field) == _crc(algorithm, data), name
    wrong = _crc(algorithm, b"another body")
    with pytest.raises(ClientError) as refused:
        client.put_object(Bucket=s3_bucket, Key="wrong", Body=b"data", **{field: wrong})  # type: ignore[arg-type]
    assert refused.value.response["Error"]["Code"] == "BadDigest"


@pytest.mark.parametrize("algorithm", ["crc32c", "crc64nvme"])
def test_crt_checksum_without_awscrt_is_refused_before_any_file_is_touched(
    spool_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    algorithm: str,
) -> None:
    monkeypatch.setattr("botocore.compat.HAS_CRT", False)  # read when the checksum needs it
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "a")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "b")
    make_files(spool_dir / "new", 2)
    before = snapshot(spool_dir)
    url = f"http://127.0.0.1:{free_port()}"

    status = cli.main(
        ["--checksum", algorithm, "--endpoint-url", url, str(spool_dir), "s3://bucket"]
    )

    assert status == 2
    assert "awscrt" in capsys.readouterr().err
    assert snapshot(spool_dir) == before


# ------------------------------------------------------------------------------- case 9


@pytest.mark.parametrize("engine", ENGINES)
def test_endpoint_that_never_answers_gives_up_after_the_timeouts_with_one_line(
    spool_dir: Path, monkeypatch: pytest.MonkeyPatch, log: io.StringIO, engine: Engine
) -> None:
    """A hung endpoint: with 2 attempts of a 1 s read timeout the pre-flight gives up in about
    2 s (not after minutes), says once that it is retrying, and stops the run with one line that
    names the endpoint, in our words; nothing is uploaded or moved."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "a")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "b")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    make_files(spool_dir / "new", 3)
    before = snapshot(spool_dir / "new")
    with SickEndpoint("silent") as endpoint:
        config = make_config(spool_dir, "bucket", endpoint.url, max_attempts=2, read_timeout=1.0)
        config = dataclasses.replace(config, s3=dataclasses.replace(config.s3, engine=engine))
        started = time.monotonic()
        summary = run(config, [LogWriter(stream=log)])
        elapsed = time.monotonic() - started
        url = endpoint.url

    lines = log.getvalue().splitlines()
    assert not summary.ok
    assert summary.failed == 0  # stopped by the pre-flight, before any file
    assert elapsed < 8, elapsed  # 2 x 1 s plus backoff and start-up
    warnings = [line for line in lines if " WARNING " in line]
    assert len(warnings) == 1, lines
    assert "requests are being retried" in warnings[0]
    assert url in warnings[0]
    errors = [line for line in lines if " ERROR " in line]
    assert len(errors) == 1, lines
    assert f"no answer from the S3 endpoint {url}: read timeout of 1 s" in errors[0]
    for raw in ("Generic S3 error", "Read timeout on endpoint URL", "Traceback"):
        assert raw not in log.getvalue()
    assert snapshot(spool_dir / "new") == before


@pytest.mark.parametrize("engine", ENGINES)
def test_max_attempts_1_gives_up_after_one_read_timeout(
    spool_dir: Path, monkeypatch: pytest.MonkeyPatch, log: io.StringIO, engine: Engine
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "a")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "b")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    make_files(spool_dir / "new", 2)
    with SickEndpoint("silent") as endpoint:
        config = make_config(spool_dir, "bucket", endpoint.url, max_attempts=1, read_timeout=2.0)
        config = dataclasses.replace(config, s3=dataclasses.replace(config.s3, engine=engine))
        started = time.monotonic()
        summary = run(config, [LogWriter(stream=log)])
        elapsed = time.monotonic() - started
        accepted, url = endpoint.accepted, endpoint.url

    assert summary.stopped is not None
    assert f"S3 endpoint {url}: read timeout of 2 s" in summary.stopped
    assert 2 <= elapsed < 6, elapsed
    assert accepted == 1  # one request, not retried
    assert " WARNING " not in log.getvalue()  # nothing was retried


@pytest.mark.parametrize("engine", ENGINES)
def test_cli_max_attempts_1_on_a_hung_endpoint_is_one_line_of_ours(
    spool_dir: Path, engine: Engine
) -> None:
    """The user's view of the case above: ``--max-attempts 1 --read-timeout 2``, exit 1 after
    about one read timeout, one ERROR line naming the endpoint, no client-library text."""
    make_files(spool_dir / "new", 2)
    env = {"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b", "AWS_REGION": "us-east-1"}
    with SickEndpoint("silent") as endpoint:
        url = endpoint.url
        args = [*SELECT[engine], "--max-attempts", "1", "--read-timeout", "2"]
        started = time.monotonic()
        result = run_cli(*args, "--endpoint-url", url, spool_dir, "s3://bucket", env=env)
        elapsed = time.monotonic() - started

    line = _one_error_line(result)
    reason = f"no answer from the S3 endpoint {url}: read timeout of 2 s"
    assert line == f"ERROR stopping: s3://bucket: {reason}"
    assert elapsed < 10, elapsed


def test_stalled_puts_warn_once_per_episode_not_per_retry(
    seaweed: SeaweedServer,
    s3_bucket: str,
    spool_dir: Path,
    proxy: FaultProxy,
    monkeypatch: pytest.MonkeyPatch,
    log: io.StringIO,
) -> None:
    """PUTs stalled past the read timeout on their first attempt (fast path): many retries,
    one warning; the files ship on their second attempt."""
    for name, value in seaweed.env().items():
        monkeypatch.setenv(name, value)
    make_files(spool_dir / "new", 6, size=100)
    proxy.set_rules(
        [FaultRule(action="stall_before", methods=frozenset({"PUT"}), stall_seconds=3, times=6)]
    )
    config = make_config(spool_dir, s3_bucket, proxy.url, max_attempts=3, read_timeout=1.0)

    summary = run(config, [LogWriter(stream=log)])

    assert summary.ok, log.getvalue()
    assert summary.uploaded == 6
    warnings = [line for line in log.getvalue().splitlines() if " WARNING " in line]
    assert len(warnings) == 1, warnings
    assert f"S3 endpoint {proxy.url}: requests are being retried (read timeout" in warnings[0]


# ------------------------------------------------------------------------------- case 10


def test_reset_during_boto3_preflight_is_one_line_exit_1_every_time(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, proxy: FaultProxy
) -> None:
    make_files(spool_dir / "new", 3)
    before = snapshot(spool_dir / "new")
    proxy.set_rules([FaultRule(action="reset_mid_body", methods=frozenset({"GET", "HEAD"}))])
    env = {**seaweed.env(), "AWS_ENDPOINT_URL": proxy.url, "AWS_ENDPOINT_URL_S3": proxy.url}
    outputs = set()
    for _ in range(5):
        result = run_cli(*SELECT["boto3"], spool_dir, f"s3://{s3_bucket}", env=env)
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr
        errors = [line for line in _lines(result.stderr) if line.startswith("ERROR ")]
        assert len(errors) == 1, result.stderr
        assert proxy.url in errors[0]
        outputs.add(errors[0])
    assert len(outputs) == 1, outputs  # the same sentence every time
    assert snapshot(spool_dir / "new") == before


def test_reset_during_preflight_daemon_backs_off_and_keeps_running(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, proxy: FaultProxy
) -> None:
    make_files(spool_dir / "new", 2)
    proxy.set_rules([FaultRule(action="reset_mid_body", methods=frozenset({"GET", "HEAD"}))])
    env = {**os.environ, **seaweed.env(), "AWS_ENDPOINT_URL": proxy.url}
    env["AWS_ENDPOINT_URL_S3"] = proxy.url
    args = [*SELECT["boto3"], "--watch", "--interval", "1", str(spool_dir), f"s3://{s3_bucket}"]
    proc = subprocess.Popen(
        [*SPOOL_TOOL, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    seen: list[str] = []
    try:
        # The first cycle fails, the backoff (5 s) passes, the second cycle fails: wait for the
        # second stop line (bounded), however slow this machine is today.
        assert proc.stderr is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            line = proc.stderr.readline()
            seen.append(line)
            if sum("ERROR ending this cycle: s3://" in x for x in seen) >= 2:
                break
        assert proc.poll() is None, "".join(seen)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=60)
    stderr = "".join(seen) + rest

    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert stderr.count("next attempt in") >= 1, stderr
    stops = [line for line in _lines(stderr) if line.startswith("ERROR ending this cycle: s3://")]
    assert len(stops) >= 2, stderr  # tried again after backing off
    assert all(proxy.url in line for line in stops)


def test_daemon_under_a_persistent_fatal_error_says_each_cycle_ended_not_that_it_stops(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path
) -> None:
    """AccessDenied on every PUT (the ``limited`` identity): each cycle's fatal stop reads as
    the end of that cycle, followed by the backoff; "stopping" is said once, by SIGTERM."""
    make_files(spool_dir / "new", 3)
    before = snapshot(spool_dir / "new")
    env = {**os.environ, **seaweed.env(), "AWS_ACCESS_KEY_ID": LIMITED_ACCESS_KEY,
           "AWS_SECRET_ACCESS_KEY": LIMITED_SECRET_KEY}  # fmt: skip
    daemon = Daemon("--interval", "1", str(spool_dir), f"s3://{s3_bucket}", env=env)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(daemon.matching("next attempt in")) < 2:
            time.sleep(0.1)
        code = daemon.stop(signal.SIGTERM, timeout=30)
    finally:
        daemon.close()
    assert code == 0, daemon.stderr
    assert "Traceback" not in daemon.stderr
    lines = _lines(daemon.stderr)
    ended = [line for line in lines if line.startswith("ERROR ending this cycle: s3://")]
    assert len(ended) >= 2, daemon.stderr
    assert all("AccessDenied" in line for line in ended)
    summaries = [line for line in lines if line.startswith("INFO summary: ")]
    assert len(summaries) >= 2, daemon.stderr
    assert all("summary: cycle ended early: s3://" in line for line in summaries)
    assert "WARNING S3 is failing: next attempt in 5 s" in lines
    assert "WARNING S3 is failing: next attempt in 10 s" in lines
    assert [line for line in lines if "stopping" in line] == ["INFO stopping: received SIGTERM"]
    assert all("stopped" not in line for line in lines)
    assert snapshot(spool_dir / "new") == before


# ------------------------------------------------------------------------------- case 11


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in _lines(result.stderr) if not line.startswith("INFO ")]
    assert len(errors) == 1, result.stderr
    return errors[0]


@pytest.mark.parametrize("sick", ["closed", "reset"])
def test_closed_or_resetting_port_reads_the_same_on_both_paths(
    spool_dir: Path, sick: Literal["closed", "reset"]
) -> None:
    make_files(spool_dir / "new", 3)
    env = {"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b", "AWS_REGION": "us-east-1"}
    lines: dict[str, str] = {}
    with SickEndpoint("reset") as endpoint:
        url = endpoint.url if sick == "reset" else f"http://127.0.0.1:{free_port()}"
        for engine in ENGINES:
            args = [*SELECT[engine], "--endpoint-url", url, str(spool_dir), "s3://bucket"]
            result = run_cli(*args, env=env)
            lines[engine] = _one_error_line(result)

    assert lines["obstore"] == lines["boto3"], lines
    assert lines["boto3"].startswith("ERROR stopping: s3://bucket: ")
    assert url in lines["boto3"]
    cause = "connection refused" if sick == "closed" else "connection reset"
    assert lines["boto3"].endswith(cause)


@pytest.mark.parametrize("bypassed", [False, True])
def test_a_proxy_from_the_environment_is_named_when_the_connection_fails(
    spool_dir: Path, bypassed: bool
) -> None:
    """Both engines send requests through ``http_proxy``: the error says so (without the
    proxy's password) and how to go around it; ``NO_PROXY`` for the host removes it."""
    make_files(spool_dir / "new", 2)
    before = snapshot(spool_dir / "new")
    proxy_port, endpoint = free_port(), f"http://127.0.0.1:{free_port()}"
    env = {
        "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b", "AWS_REGION": "us-east-1",
        "http_proxy": f"http://user:s3cret@127.0.0.1:{proxy_port}",
        "NO_PROXY": "127.0.0.1" if bypassed else "",
    }  # fmt: skip
    lines = {}
    for engine in ENGINES:
        args = [*SELECT[engine], "--endpoint-url", endpoint, str(spool_dir), "s3://bucket"]
        lines[engine] = _one_error_line(run_cli(*args, env=env))

    assert lines["obstore"] == lines["boto3"], lines
    hint = f"(through the proxy 127.0.0.1:{proxy_port} from http_proxy; NO_PROXY=127.0.0.1"
    assert (hint in lines["boto3"]) is not bypassed, lines["boto3"]
    assert "connection refused" in lines["boto3"]
    assert "s3cret" not in lines["boto3"]
    assert snapshot(spool_dir / "new") == before


@pytest.mark.parametrize("engine", ENGINES)
def test_a_private_ca_named_by_aws_ca_bundle_is_trusted_by_both_paths(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, tmp_path: Path, engine: str
) -> None:
    """An HTTPS endpoint whose certificate a private CA signed (MinIO behind an internal CA):
    ``AWS_CA_BUNDLE`` makes botocore trust it, and the obstore engine must too, or every small
    file fails while multipart uploads (botocore) succeed."""
    small = b"small"
    large = os.urandom(6 * MiB)
    (spool_dir / "new" / "small.txt").write_bytes(small)
    (spool_dir / "new" / "large.bin").write_bytes(large)
    with TlsFront(seaweed.endpoint_url, tmp_path) as front:
        env = {
            **seaweed.env(), "AWS_ENDPOINT_URL": front.url, "AWS_ENDPOINT_URL_S3": front.url,
            "AWS_CA_BUNDLE": str(front.ca),
        }  # fmt: skip
        result = run_cli(
            *SELECT[engine], "--multipart-threshold", "5MiB", "--part-size", "5MiB",
            spool_dir, f"s3://{s3_bucket}/tls/", env=env,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    client = seaweed.client()
    assert get_body(client, s3_bucket, "tls/small.txt") == small
    assert get_body(client, s3_bucket, "tls/large.bin") == large


def test_an_untrusted_certificate_is_the_same_line_on_both_paths(
    seaweed: SeaweedServer, spool_dir: Path, tmp_path: Path
) -> None:
    make_files(spool_dir / "new", 2)
    before = snapshot(spool_dir / "new")
    lines = {}
    with TlsFront(seaweed.endpoint_url, tmp_path) as front:
        env = {**seaweed.env(), "AWS_ENDPOINT_URL": front.url, "AWS_ENDPOINT_URL_S3": front.url}
        for engine in ENGINES:
            result = run_cli(*SELECT[engine], spool_dir, "s3://bucket", env=env)
            lines[engine] = _one_error_line(result)

    assert lines["obstore"] == lines["boto3"], lines
    assert (
        f"cannot reach the S3 endpoint {front.url}: its TLS certificate is not trusted"
        in (lines["boto3"])
    )
    assert "(AWS_CA_BUNDLE, or ca_bundle in the profile, names" in lines["boto3"]
    assert snapshot(spool_dir / "new") == before


def test_a_ca_bundle_that_cannot_be_read_is_a_usage_error(spool_dir: Path) -> None:
    (spool_dir / "new" / "a.dat").write_bytes(b"a")
    env = {"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b", "AWS_REGION": "us-east-1"}
    result = run_cli(
        "--endpoint-url", "https://127.0.0.1:9", spool_dir, "s3://bucket",
        env={**env, "AWS_CA_BUNDLE": "/nonexistent/ca.pem"},
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    message = "cannot read the CA bundle /nonexistent/ca.pem: No such file or directory"
    assert result.stderr.strip().splitlines() == [
        f"spool_tool: error: {message} (see spool_tool --help)"
    ]
    assert (spool_dir / "new" / "a.dat").exists()


def test_wrong_secret_is_one_line_on_both_paths(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path
) -> None:
    make_files(spool_dir / "new", 6)
    before = snapshot(spool_dir / "new")
    env = {**seaweed.env(), "AWS_SECRET_ACCESS_KEY": "wrong-secret"}
    lines = {}
    for engine in ENGINES:
        result = run_cli(*SELECT[engine], spool_dir, f"s3://{s3_bucket}", env=env)
        lines[engine] = _one_error_line(result)

    assert lines["obstore"] == lines["boto3"], lines
    assert "SignatureDoesNotMatch" in lines["boto3"]
    assert "check the secret key" in lines["boto3"]
    assert snapshot(spool_dir / "new") == before


# ------------------------------------------------------------------- issue 9 audit: endpoints


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    ("spelled", "url"),
    [
        ("--endpoint-url", "http://a b"),
        ("--endpoint-url", "http://h:notaport"),
        ("--endpoint-url", "http://h:99999"),
        ("--endpoint-url", "http://[::1"),
        ("AWS_ENDPOINT_URL", "not a url"),
        ("AWS_ENDPOINT_URL", "http://"),
        ("AWS_ENDPOINT_URL_S3", "ftp://127.0.0.1:9"),
    ],
)
def test_malformed_endpoint_url_is_a_usage_error_on_both_paths(
    spool_dir: Path, engine: Engine, spelled: str, url: str
) -> None:
    """A malformed endpoint URL used to make obstore panic (a pyo3 PanicException traceback)
    and botocore fail only at the pre-flight (exit 1), and AWS_ENDPOINT_URL was not checked at
    all. Now one usage line naming where it came from, exit 2, nothing touched."""
    (spool_dir / "new" / "a.txt").write_bytes(b"a")
    env = {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "AWS_DEFAULT_REGION": "x"}
    args: list[str | Path] = [*SELECT[engine], spool_dir, "s3://bucket-x/"]
    if spelled.startswith("--"):
        args = [spelled, url, *args]
    else:
        env[spelled] = url
    before = snapshot(spool_dir)

    result = run_cli(*args, env=env, timeout=60)

    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"spool_tool: error: invalid {spelled} {url!r}: ")
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert snapshot(spool_dir) == before


@pytest.mark.parametrize("engine", ENGINES)
def test_retry_warning_names_the_endpoint_from_aws_endpoint_url(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, proxy: FaultProxy, engine: Engine
) -> None:
    """The endpoint set by AWS_ENDPOINT_URL (the usual way for a self-hosted store) was named
    "(AWS)" in the retry warning while every other line named its URL. Now its URL too."""
    make_files(spool_dir / "new", 2, size=10)
    proxy.set_rules([FaultRule(action="status", status=500, code="InternalError", times=2)])
    env = {**seaweed.env(), "AWS_ENDPOINT_URL": proxy.url, "AWS_ENDPOINT_URL_S3": ""}

    result = run_cli(*SELECT[engine], spool_dir, f"s3://{s3_bucket}/", env=env, timeout=60)

    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if " WARNING " in line]
    assert len(warnings) == 1, result.stderr
    assert f"S3 endpoint {proxy.url}: requests are being retried (InternalError" in warnings[0]
