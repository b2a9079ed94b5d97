"""Self-tests of the fault-injection tools in tests/faults against a throw-away moto server."""

from __future__ import annotations

import contextlib
import http.client
import io
import os
import socket
import threading
import time
import urllib.request
from typing import TYPE_CHECKING, Literal

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError, ReadTimeoutError
from moto.server import ThreadedMotoServer

from tests.faults.hooks import (
    EXPIRED_TOKEN,
    INTERNAL_ERROR,
    INVALID_ACCESS_KEY_ID,
    REQUEST_TIME_TOO_SKEWED,
    SLOW_DOWN,
    FaultPlan,
    fault,
    install_faults,
)
from tests.faults.proxy import FaultProxy, FaultRule, _read_head, _read_request_body, _Reader

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from mypy_boto3_s3 import S3Client

BUCKET = "fault-tools"
MiB = 1024 * 1024

pytestmark = pytest.mark.usefixtures("fast_backoff")


# ------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in list(os.environ):
        if var.startswith("AWS_"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def make_client() -> Callable[..., S3Client]:
    def make(
        endpoint: str,
        *,
        max_attempts: int = 3,
        read_timeout: float = 10.0,
        mode: Literal["legacy", "standard", "adaptive"] = "standard",
    ) -> S3Client:
        config = Config(
            s3={"addressing_style": "path"},
            retries={"mode": mode, "total_max_attempts": max_attempts},
            connect_timeout=2,
            read_timeout=read_timeout,
        )
        return boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=config,
        )

    return make


@pytest.fixture
def direct(moto_url: str, make_client: Callable[..., S3Client]) -> S3Client:
    """A client talking to moto directly, with a fresh bucket."""
    req = urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200
    client = make_client(moto_url)
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture
def proxy(moto_url: str, direct: S3Client) -> Iterator[FaultProxy]:
    with FaultProxy(moto_url, seed=1) as p:
        yield p


def payload(size: int, seed: int = 0) -> bytes:
    return (bytes(range(256)) * (size // 256 + 1))[seed % 256 : seed % 256 + size]


def read_object(client: S3Client, key: str) -> bytes:
    return client.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def exists(client: S3Client, key: str) -> bool:
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=key).get("Contents", [])
    return any(obj["Key"] == key for obj in listed)


# ------------------------------------------------------------------- proxy: clean forwarding


def test_proxy_forwards_put_get_head_delete_intact(
    proxy: FaultProxy, direct: S3Client, make_client: Callable[..., S3Client]
) -> None:
    client = make_client(proxy.url)
    keys = ["plain", "dir/sp ace+plus%25=eq-ünï", "zero"]
    bodies = [payload(300_000), payload(4097, seed=7), b""]
    for key, body in zip(keys, bodies, strict=True):
        client.put_object(Bucket=BUCKET, Key=key, Body=body)
    for key, body in zip(keys, bodies, strict=True):
        assert read_object(client, key) == body  # through the proxy
        assert read_object(direct, key) == body  # and as stored upstream
        assert client.head_object(Bucket=BUCKET, Key=key)["ContentLength"] == len(body)
    listed = client.list_objects_v2(Bucket=BUCKET)["Contents"]
    assert sorted(o["Key"] for o in listed) == sorted(keys)
    client.delete_object(Bucket=BUCKET, Key="zero")
    with pytest.raises(ClientError) as info:
        client.head_object(Bucket=BUCKET, Key="zero")
    assert info.value.response["Error"]["Code"] == "404"
    assert not exists(client, "zero")
    assert read_object(client, "plain") == bodies[0]  # a HEAD 404 kept the connection usable
    stats = proxy.stats
    assert stats.faults_total == 0
    assert stats.forwarded == stats.requests
    assert stats.by_method["HEAD"] == 4
    assert stats.client_disconnects == 0
    assert stats.upstream_errors == 0


def test_proxy_forwards_multipart_upload_with_expect_continue(
    proxy: FaultProxy, direct: S3Client, make_client: Callable[..., S3Client]
) -> None:
    client = make_client(proxy.url)
    data = payload(11 * MiB + 123, seed=3)
    config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    # A file-like body makes botocore send "Expect: 100-continue".
    client.upload_fileobj(io.BytesIO(data), BUCKET, "big", Config=config)
    assert read_object(direct, "big") == data
    assert read_object(client, "big") == data
    seen = proxy.history()
    puts = [r for r in seen if r.method == "PUT" and "uploadId" in r.target]
    posts = [r for r in seen if r.method == "POST"]
    assert len(puts) == 3  # three parts
    assert len(posts) == 2  # CreateMultipartUpload + CompleteMultipartUpload
    assert direct.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


class CaptureUpstream:
    """A raw upstream that records the exact bytes it receives and answers 200 'ok'."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.connections = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn:
                self.connections += 1
                reader = _Reader(conn)
                req = _read_head(reader)
                body = _read_request_body(reader, req)
                self.received.append(req.head + body)
                reply = b"ok" if req.start[0] != "HEAD" else b""
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n" + reply)

    def close(self) -> None:
        self._sock.shutdown(socket.SHUT_RDWR)  # unblocks accept() on Linux
        self._sock.close()
        self._thread.join(timeout=2)


def raw_response(sock: socket.socket, method: str = "GET") -> tuple[int, bytes]:
    resp = http.client.HTTPResponse(sock, method=method)
    resp.begin()
    try:
        return resp.status, resp.read()
    finally:
        resp.close()


def test_proxy_is_byte_faithful_with_keepalive_and_chunked_bodies() -> None:
    upstream = CaptureUpstream()
    try:
        with (
            FaultProxy(upstream.url) as proxy,
            socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock,
        ):
            # 1: Content-Length body; odd header spelling and a foreign Host are kept.
            head1 = (
                b"PUT /b/k%20ey?x=1 HTTP/1.1\r\nHost: s3.example.test:9000\r\n"
                b"X-Amz-Meta-Odd:  spaced value \r\nContent-Length: 5\r\n\r\n"
            )
            sock.sendall(head1 + b"hello")
            assert raw_response(sock) == (200, b"ok")
            # 2: same connection, aws-chunked content in a chunked transfer, with a trailer.
            chunked = b"5;chunk-signature=ab\r\nhello\r\n0\r\nx-amz-checksum-crc32: AAAA\r\n\r\n"
            head2 = (
                b"PUT /b/k2 HTTP/1.1\r\nHost: h\r\nContent-Encoding: aws-chunked\r\n"
                b"Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
            )
            sock.sendall(head2)
            assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
            sock.sendall(chunked)
            assert raw_response(sock) == (200, b"ok")
            # 3: HEAD on the same connection: a Content-Length but no body follows.
            sock.sendall(b"HEAD /b/k HTTP/1.1\r\nHost: h\r\n\r\n")
            assert raw_response(sock, "HEAD") == (200, b"")
            # 4: still the same connection after a HEAD.
            sock.sendall(b"GET /b/k HTTP/1.1\r\nHost: h\r\n\r\n")
            assert raw_response(sock) == (200, b"ok")
            assert proxy.stats.requests == 4
            assert proxy.stats.client_disconnects == 0
    finally:
        upstream.close()
    assert upstream.received[0] == head1 + b"hello"
    assert upstream.received[1] == head2.replace(b"Expect: 100-continue\r\n", b"") + chunked
    assert upstream.received[2] == b"HEAD /b/k HTTP/1.1\r\nHost: h\r\n\r\n"
    assert len(upstream.received) == 4


# ------------------------------------------------------------------------- proxy: faults


def test_proxy_503_is_retried_by_botocore(
    proxy: FaultProxy, direct: S3Client, make_client: Callable[..., S3Client]
) -> None:
    client = make_client(proxy.url, max_attempts=5)
    proxy.set_rules([FaultRule(action="status", status=503, code="SlowDown", times=3)])
    client.put_object(Bucket=BUCKET, Key="k", Body=b"data")
    puts = [r for r in proxy.history() if r.method == "PUT"]
    assert [r.action for r in puts] == ["status", "status", "status", None]
    assert proxy.stats.faults == {"status": 3}
    assert proxy.rule_uses() == [3]
    assert read_object(direct, "k") == b"data"

    # Always 503 and few attempts: botocore gives up with the injected code.
    proxy.set_rules([FaultRule(action="status", status=503, code="SlowDown")])
    client3 = make_client(proxy.url, max_attempts=3)
    with pytest.raises(ClientError) as info:
        client3.put_object(Bucket=BUCKET, Key="k2", Body=b"data")
    assert info.value.response["Error"]["Code"] == "SlowDown"
    assert info.value.response["ResponseMetadata"]["RetryAttempts"] == 2
    assert proxy.rule_uses() == [3]
    assert not exists(direct, "k2")


def test_proxy_reset_mid_body(
    proxy: FaultProxy, direct: S3Client, make_client: Callable[..., S3Client]
) -> None:
    proxy.set_rules([FaultRule(action="reset_mid_body", times=2)])
    no_retry = make_client(proxy.url, max_attempts=1)
    with pytest.raises(HTTPClientError):  # ConnectionClosedError / connection reset
        no_retry.put_object(Bucket=BUCKET, Key="bytes", Body=payload(2 * MiB))
    with pytest.raises(HTTPClientError):  # the same with Expect: 100-continue (file body)
        no_retry.put_object(Bucket=BUCKET, Key="file", Body=io.BytesIO(payload(2 * MiB)))
    assert proxy.stats.faults == {"reset_mid_body": 2}
    assert proxy.stats.forwarded == 0
    assert not exists(direct, "bytes")
    assert not exists(direct, "file")

    proxy.set_rules([FaultRule(action="reset_mid_body", times=1)])
    retrying = make_client(proxy.url, max_attempts=3)
    retrying.put_object(Bucket=BUCKET, Key="file", Body=io.BytesIO(payload(MiB)))
    assert read_object(direct, "file") == payload(MiB)
    assert proxy.rule_uses() == [1]


def test_proxy_stall_after_applies_write_while_client_times_out(
    proxy: FaultProxy, direct: S3Client, make_client: Callable[..., S3Client]
) -> None:
    proxy.set_rules([FaultRule(action="stall_after", stall_seconds=30, times=1)])
    client = make_client(proxy.url, max_attempts=1, read_timeout=1)
    started = time.monotonic()
    with pytest.raises(ReadTimeoutError):
        client.put_object(Bucket=BUCKET, Key="ambiguous", Body=b"applied")
    assert time.monotonic() - started < 5
    assert read_object(direct, "ambiguous") == b"applied"  # the write WAS applied
    assert proxy.stats.faults == {"stall_after": 1}
    # The rule is exhausted: the same client now works through the proxy.
    assert read_object(client, "ambiguous") == b"applied"


def test_proxy_stall_before_does_not_forward_when_client_gives_up(
    proxy: FaultProxy, direct: S3Client, make_client: Callable[..., S3Client]
) -> None:
    proxy.set_rules([FaultRule(action="stall_before", stall_seconds=30)])
    client = make_client(proxy.url, max_attempts=1, read_timeout=1)
    with pytest.raises(ReadTimeoutError):
        client.put_object(Bucket=BUCKET, Key="never", Body=b"x")
    time.sleep(0.2)  # the proxy notices the disconnect within 50 ms
    assert proxy.stats.forwarded == 0
    assert not exists(direct, "never")

    # A stall shorter than the read timeout just delays the request.
    proxy.set_rules([FaultRule(action="stall_before", stall_seconds=0.3)])
    started = time.monotonic()
    client.put_object(Bucket=BUCKET, Key="late", Body=b"y")
    assert time.monotonic() - started >= 0.3
    assert read_object(direct, "late") == b"y"


def test_proxy_status_after_forward_and_times_exhaustion(
    proxy: FaultProxy, direct: S3Client, make_client: Callable[..., S3Client]
) -> None:
    client = make_client(proxy.url, max_attempts=1)
    proxy.set_rules(
        [
            FaultRule(action="status_after_forward", status=500, code="InternalError", times=1),
            FaultRule(action="status", methods=frozenset({"GET"}), code="SlowDown", times=2),
        ]
    )
    with pytest.raises(ClientError) as info:
        client.put_object(Bucket=BUCKET, Key="amb", Body=b"v1")
    assert info.value.response["Error"]["Code"] == "InternalError"
    assert read_object(direct, "amb") == b"v1"  # applied despite the 500
    client.put_object(Bucket=BUCKET, Key="amb", Body=b"v2")  # rule 1 exhausted
    for _ in range(2):
        with pytest.raises(ClientError, match="SlowDown"):
            read_object(client, "amb")
    assert read_object(client, "amb") == b"v2"  # rule 2 exhausted
    assert proxy.rule_uses() == [1, 2]
    assert proxy.stats.faults == {"status_after_forward": 1, "status": 2}
    proxy.clear()
    assert proxy.rule_uses() == []


def test_proxy_path_filter_and_seeded_probability(
    moto_url: str, direct: S3Client, make_client: Callable[..., S3Client]
) -> None:
    def run(seed: int) -> list[str | None]:
        with FaultProxy(moto_url, seed=seed) as proxy:
            client = make_client(proxy.url, max_attempts=1)
            proxy.set_rules([FaultRule(action="status", path_contains="/flaky-", probability=0.5)])
            for i in range(20):
                with contextlib.suppress(ClientError):
                    client.put_object(Bucket=BUCKET, Key=f"flaky-{i}", Body=b"x")
            client.put_object(Bucket=BUCKET, Key="steady", Body=b"x")  # path does not match
            return [r.action for r in proxy.history()]

    first, second, other = run(7), run(7), run(8)
    assert first == second  # reproducible
    assert first != other
    assert 3 <= first.count("status") <= 17
    assert first[-1] is None


def test_proxy_stop_is_prompt_and_quiet(
    moto_url: str, direct: S3Client, capfd: pytest.CaptureFixture[str]
) -> None:
    proxy = FaultProxy(moto_url)
    proxy.set_rules([FaultRule(action="stall_after", methods=frozenset(), stall_seconds=60)])
    idle = socket.create_connection(("127.0.0.1", proxy.port))
    stalled = socket.create_connection(("127.0.0.1", proxy.port))
    rude = socket.create_connection(("127.0.0.1", proxy.port))
    try:
        stalled.sendall(f"GET /{BUCKET} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        rude.sendall(b"PUT /b/k HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
        rude.close()  # disconnect mid-body
        time.sleep(0.3)
        started = time.monotonic()
        proxy.stop()
        assert time.monotonic() - started < 2
        stalled.settimeout(2)
        assert stalled.recv(100) == b""  # closed without a response
        idle.settimeout(2)
        assert idle.recv(100) == b""
    finally:
        idle.close()
        stalled.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=1).close()
    out, err = capfd.readouterr()
    assert "Traceback" not in err + out


# --------------------------------------------------------------------------- botocore hooks


def test_hook_503_retried_then_succeeds(
    moto_url: str, direct: S3Client, make_client: Callable[..., S3Client]
) -> None:
    client = make_client(moto_url, max_attempts=5)
    plan = FaultPlan(status=503, code="SlowDown", operations={"PutObject"}, first_n=2)
    with install_faults(client, plan) as faults:
        resp = client.put_object(Bucket=BUCKET, Key="k", Body=b"data")
        client.get_object(Bucket=BUCKET, Key="k")  # other operations pass through
    assert resp["ResponseMetadata"]["RetryAttempts"] == 2
    assert faults.injected == plan.injected == 2
    assert [(c.operation, c.attempt, c.injected) for c in faults.calls] == [
        ("PutObject", 1, 503),
        ("PutObject", 2, 503),
        ("PutObject", 3, None),
        ("GetObject", 1, None),
    ]
    assert read_object(direct, "k") == b"data"
    # Uninstalled: no more faults even though the plan would match again.
    client.put_object(Bucket=BUCKET, Key="k", Body=b"again")
    assert faults.injected == 2


@pytest.mark.parametrize(
    ("kind", "retried"),
    [(SLOW_DOWN, True), (INTERNAL_ERROR, True)],
)
def test_hook_retryable_errors_exhaust_attempts(
    moto_url: str,
    direct: S3Client,
    make_client: Callable[..., S3Client],
    kind: tuple[int, str],
    retried: bool,
) -> None:
    client = make_client(moto_url, max_attempts=3)
    with install_faults(client, fault(kind)) as faults, pytest.raises(ClientError) as info:
        client.put_object(Bucket=BUCKET, Key="k", Body=b"data")
    assert info.value.response["Error"]["Code"] == kind[1]
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == kind[0]
    assert faults.attempts_of("PutObject") == (3 if retried else 1)
    assert not exists(direct, "k")


@pytest.mark.parametrize("kind", [EXPIRED_TOKEN, REQUEST_TIME_TOO_SKEWED, INVALID_ACCESS_KEY_ID])
@pytest.mark.parametrize("mode", ["standard", "legacy"])
def test_hook_auth_errors_are_not_retried(
    moto_url: str,
    direct: S3Client,
    make_client: Callable[..., S3Client],
    kind: tuple[int, str],
    mode: str,
) -> None:
    client = make_client(moto_url, max_attempts=5, mode=mode)
    with install_faults(client, fault(kind)) as faults, pytest.raises(ClientError) as info:
        client.put_object(Bucket=BUCKET, Key="k", Body=b"data")
    assert info.value.response["Error"]["Code"] == kind[1]
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == kind[0]
    assert faults.attempts_of("PutObject") == 1
    assert faults.injected == 1


def test_hook_attempt_based_and_seeded_plans(
    moto_url: str, direct: S3Client, make_client: Callable[..., S3Client]
) -> None:
    client = make_client(moto_url, max_attempts=3)
    # Every call's first attempt fails; the retry succeeds.
    with install_faults(client, fault(INTERNAL_ERROR, attempts={1})) as faults:
        for i in range(3):
            client.put_object(Bucket=BUCKET, Key=f"a{i}", Body=b"x")
    assert faults.injected == 3
    assert [c.attempt for c in faults.calls] == [1, 2, 1, 2, 1, 2]

    def run(seed: int) -> list[int | None]:
        plan = fault(SLOW_DOWN, operations={"HeadObject"}, probability=0.5, seed=seed)
        codes: list[str] = []
        with install_faults(make_client(moto_url, max_attempts=1), plan) as handle:
            for _ in range(20):
                try:
                    handle.client.head_object(Bucket=BUCKET, Key="a0")
                except ClientError as exc:
                    codes.append(exc.response["Error"]["Code"])
        assert set(codes) <= {"503"}  # a HEAD error has no body: the code is the status
        assert len(codes) == handle.injected
        return [c.injected for c in handle.calls]

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_hook_200_error_on_complete_multipart_is_retried(
    moto_url: str, direct: S3Client, make_client: Callable[..., S3Client]
) -> None:
    client = make_client(moto_url, max_attempts=3)
    data = payload(6 * MiB)
    plan = FaultPlan(
        status=200, code="InternalError", operations={"CompleteMultipartUpload"}, first_n=1
    )
    config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    with install_faults(client, [plan]) as faults:
        client.upload_fileobj(io.BytesIO(data), BUCKET, "mpu", Config=config)
    assert faults.injected == 1
    assert faults.attempts_of("CompleteMultipartUpload") == 2
    assert faults.attempts_of("UploadPart") == 2
    assert read_object(direct, "mpu") == data
