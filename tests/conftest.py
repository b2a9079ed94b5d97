"""Shared fixtures: real S3 servers (SeaweedFS, moto), a spool directory, a clean AWS environment.

Servers
-------
``seaweed`` (session): one SeaweedFS ``weed mini`` on 127.0.0.1 for the whole run, started on
first use (about 1 s; stopping takes 2-4 s at the end of the session). Tests that use it are
marked ``s3`` automatically, so ``pytest -m "not s3"`` runs without it. Identities:

* admin: ``seaweed.access_key`` / ``seaweed.secret_key`` (random), actions Admin, Read, List,
  Tagging, Write; ``seaweed.client()`` and ``seaweed.env()`` use it.
* ``limited``: ``LIMITED_ACCESS_KEY`` / ``LIMITED_SECRET_KEY`` ("LIMITEDAK" / "LIMITEDSK"),
  actions ``Read:allowed-bucket``, ``Write:allowed-bucket``, ``List:allowed-bucket`` only.
  ``allowed-bucket`` exists from the start. Use the ``limited_client`` fixture.

What SeaweedFS 4.48 answers (checked by tests/test_infra.py), with ``s3.autoCreateBucket``
off (devtools.seaweed's default; weed's own default would auto-create buckets, see there):

==========================================================  ==================================
request                                                     answer
==========================================================  ==================================
limited: put/get/list/multipart/delete on allowed-bucket      allowed
limited: PutObject/GetObject/CreateMultipartUpload on any     ``AccessDenied`` 403
other bucket, existing or not
limited: CreateBucket                                       ``AccessDenied`` 403
limited: ListBuckets                                        allowed, lists allowed-bucket only
admin (or limited on allowed-bucket if it were deleted):    ``NoSuchBucket`` 404
PutObject/CreateMultipartUpload/ListObjectsV2 on a
missing bucket
HeadBucket on a missing bucket                              404 (code "404", no body)
wrong secret key                                            ``SignatureDoesNotMatch`` 403
unknown access key                                          ``InvalidAccessKeyId`` 403
wrong Content-MD5                                           ``BadDigest`` 400
wrong x-amz-checksum-sha256 / -sha1 / -crc32 ...             ``BadDigest`` 400 (message still
                                                            says "The Content-Md5 you
                                                            specified did not match")
PutObject with ``If-None-Match: *`` on an existing key      ``PreconditionFailed`` 412
==========================================================  ==================================

So: to provoke ``NoSuchBucket`` use the admin client (or ``seaweed.env()``) with a bucket name
that was never created (``MISSING_BUCKET``); to provoke ``AccessDenied`` use the limited
identity on any bucket except ``allowed-bucket``.

``moto_server`` (session): moto's ThreadedMotoServer on 127.0.0.1 (a port chosen by the
kernel); returns the endpoint URL. ``moto_bucket`` resets moto (``POST /moto-api/reset``) and
creates ``MOTO_BUCKET``. moto accepts any keys (``moto_env`` holds a set) and does NOT verify
checksums: use SeaweedFS for integrity tests.

Environment
-----------
An autouse fixture deletes every ``AWS_*`` variable inherited from the machine (this one sets
``AWS_CA_BUNDLE``, for example), points ``AWS_CONFIG_FILE`` and ``AWS_SHARED_CREDENTIALS_FILE``
at /dev/null so no ~/.aws profile leaks in, and sets ``AWS_EC2_METADATA_DISABLED=true`` so
botocore never probes the instance metadata service. Tests add what they need with
``monkeypatch.setenv`` or ``env={**os.environ, **seaweed.env()}``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import urllib.request
import uuid
from typing import TYPE_CHECKING

import boto3
import pytest
from botocore.config import Config
from hypothesis import settings
from moto.server import ThreadedMotoServer

from devtools.seaweed import SeaweedServer
from spool_tool.journal import Journal
from spool_tool.throttle import RetryPolicy

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from mypy_boto3_s3 import S3Client

    from tests.faults.proxy import FaultProxy

# CI runs the same Hypothesis examples every time (a red CI must mean a change broke something);
# developers' runs explore new examples. HYPOTHESIS_PROFILE=ci reproduces CI locally.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

LIMITED_ACCESS_KEY = "LIMITEDAK"
LIMITED_SECRET_KEY = "LIMITEDSK"
ALLOWED_BUCKET = "allowed-bucket"
MISSING_BUCKET = "never-created-bucket"  # never created on either server
MOTO_BUCKET = "moto-bucket"
MOTO_ACCESS_KEY = "testing"
MOTO_SECRET_KEY = "testing"  # moto accepts any keys


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the SeaweedFS server with ``s3``."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "seaweed" in fixtures:
            item.add_marker(pytest.mark.s3)


@pytest.fixture(autouse=True)
def _isolate_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


# --------------------------------------------------------------------------- SeaweedFS


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    limited: dict[str, object] = {
        "name": "limited",
        "credentials": [{"accessKey": LIMITED_ACCESS_KEY, "secretKey": LIMITED_SECRET_KEY}],
        "actions": [f"{action}:{ALLOWED_BUCKET}" for action in ("Read", "Write", "List")],
    }
    server = SeaweedServer(
        tmp_path_factory.mktemp("seaweed"),
        buckets=[ALLOWED_BUCKET],
        extra_identities=[limited],
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(seaweed: SeaweedServer) -> str:
    """A fresh, uniquely named, empty bucket on the session's SeaweedFS server."""
    name = f"test-{uuid.uuid4().hex[:24]}"
    seaweed.client().create_bucket(Bucket=name)
    return name


@pytest.fixture
def proxy_seed() -> int:
    """The fault proxy's random seed (a module overrides it to draw other faults)."""
    return 20240601


@pytest.fixture
def proxy(seaweed: SeaweedServer, proxy_seed: int) -> Iterator[FaultProxy]:
    """``tests.faults.proxy.FaultProxy`` in front of the session's SeaweedFS (no rules yet)."""
    from tests.faults.proxy import FaultProxy  # noqa: PLC0415

    with FaultProxy(seaweed.endpoint_url, seed=proxy_seed) as p:
        yield p


@pytest.fixture
def limited_client(seaweed: SeaweedServer) -> S3Client:
    """A client signed as the ``limited`` identity (only allowed-bucket), no retries."""
    return seaweed.client(
        aws_access_key_id=LIMITED_ACCESS_KEY,
        aws_secret_access_key=LIMITED_SECRET_KEY,
        config=Config(retries={"total_max_attempts": 1}),
    )


# --------------------------------------------------------------------------- moto


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def moto_env(moto_server: str) -> dict[str, str]:
    """Environment variables pointing boto3 / spool_tool at the moto server."""
    return {
        "AWS_ACCESS_KEY_ID": MOTO_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": MOTO_SECRET_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": moto_server,
        "AWS_ENDPOINT_URL_S3": moto_server,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


@pytest.fixture
def moto_client(moto_server: str) -> S3Client:
    """A path-style us-east-1 client for the moto server."""
    return boto3.session.Session().client(
        "s3",
        endpoint_url=moto_server,
        region_name="us-east-1",
        aws_access_key_id=MOTO_ACCESS_KEY,
        aws_secret_access_key=MOTO_SECRET_KEY,
        config=Config(s3={"addressing_style": "path"}),
    )


@pytest.fixture
def moto_bucket(moto_server: str, moto_client: S3Client) -> str:
    """Reset moto (all its state goes) and create ``MOTO_BUCKET``; returns the bucket name."""
    request = urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    moto_client.create_bucket(Bucket=MOTO_BUCKET)
    return MOTO_BUCKET


# --------------------------------------------------------------------------- spool


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    """``tmp_path/"spool"`` with an empty ``new/`` inside (``completed/`` is not created)."""
    root = tmp_path / "spool"
    (root / "new").mkdir(parents=True)
    return root


@pytest.fixture
def s3_env(seaweed: SeaweedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials and region of the SeaweedFS admin identity, for in-process runs."""
    for name, value in seaweed.env().items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the real retry decisions (``destinations/gated.py``, both engines), but sleep
    10 ms between attempts (in-process)."""
    monkeypatch.setattr(RetryPolicy, "delay", lambda self, retry, throttled, rng: 0.01)


@pytest.fixture
def completed(spool: Path) -> Path:
    """``spool/completed``, created (modules that always want it: ``usefixtures("completed")``)."""
    completed = spool / "completed"
    completed.mkdir()
    return completed


@pytest.fixture
def spool_dir(spool: Path) -> Path:
    """The same spool as ``spool`` (the name most modules use)."""
    return spool


@pytest.fixture
def journal(spool: Path) -> Iterator[Journal]:
    """The journal of ``spool``, open for the test and closed after it."""
    with Journal.open(spool) as j:
        yield j


# --------------------------------------------------------------------------- mounts

# A filesystem that fills up after a couple of files. The journal (claims, ledger, manifest
# outbox) takes 32 KiB once checkpointed and more in its WAL while it is created: 64 KiB no
# longer held it.
TINY_TMPFS = "size=128k"


def can_mount_in_namespace() -> str | None:
    """None when ``unshare -m`` + ``mount -t tmpfs`` work here, else the reason they do not."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return "unshare (util-linux) is not installed"
    with tempfile.TemporaryDirectory() as probe:
        result = subprocess.run(
            [unshare, "-m", "--", "mount", "-t", "tmpfs", "-o", TINY_TMPFS, "tmpfs", probe],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    if result.returncode != 0:
        return f"cannot mount a tmpfs in a mount namespace: {result.stderr.strip()}"
    return None


@pytest.fixture(scope="module")
def mount_namespace() -> None:
    """Skip unless a tmpfs can be mounted in a mount namespace (``unshare -m``)."""
    reason = can_mount_in_namespace()
    if reason is not None:
        pytest.skip(reason)
