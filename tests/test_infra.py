"""Self-tests of the test infrastructure: the fixtures in conftest.py and devtools.seaweed."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import subprocess
import sys
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest
from botocore.exceptions import ClientError

from devtools.seaweed import SeaweedServer, find_weed, free_port
from tests.conftest import ALLOWED_BUCKET, MISSING_BUCKET, MOTO_BUCKET

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

REPO = Path(__file__).resolve().parent.parent


def error_code(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response = excinfo.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


# --------------------------------------------------------------------------- environment


def test_aws_environment_is_clean() -> None:
    leaked = {k for k in os.environ if k.startswith("AWS_")} - {
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_EC2_METADATA_DISABLED",
    }
    assert leaked == set()
    assert os.environ["AWS_EC2_METADATA_DISABLED"] == "true"
    assert os.environ["AWS_CONFIG_FILE"] == os.devnull


def test_spool_dir(spool_dir: Path) -> None:
    assert spool_dir.name == "spool"
    assert (spool_dir / "new").is_dir()
    assert list((spool_dir / "new").iterdir()) == []
    assert not (spool_dir / "completed").exists()


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 1024 < port < 65536
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_find_weed() -> None:
    weed = find_weed()
    assert weed.name == "weed"
    assert os.access(weed, os.X_OK)


# --------------------------------------------------------------------------- SeaweedFS


def test_seaweed_put_get(seaweed: SeaweedServer, s3_bucket: str) -> None:
    assert seaweed.endpoint_url.startswith("http://127.0.0.1:")
    client = seaweed.client()
    client.put_object(Bucket=s3_bucket, Key="dir/hello.txt", Body=b"hello")
    assert client.get_object(Bucket=s3_bucket, Key="dir/hello.txt")["Body"].read() == b"hello"
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=s3_bucket).get("Contents", [])]
    assert keys == ["dir/hello.txt"]


def test_s3_bucket_is_fresh(seaweed: SeaweedServer, s3_bucket: str) -> None:
    assert seaweed.client().list_objects_v2(Bucket=s3_bucket)["KeyCount"] == 0


def test_seaweed_env_works_for_a_plain_boto3_client(
    seaweed: SeaweedServer, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in seaweed.env().items():
        monkeypatch.setenv(name, value)
    client = boto3.session.Session().client("s3")
    client.put_object(Bucket=s3_bucket, Key="via-env", Body=b"1")
    names = [b.get("Name") for b in client.list_buckets()["Buckets"]]
    assert s3_bucket in names


def test_seaweed_rejects_wrong_content_md5(seaweed: SeaweedServer, s3_bucket: str) -> None:
    client = seaweed.client()
    wrong = b64(hashlib.md5(b"hellx").digest())
    with pytest.raises(ClientError) as excinfo:
        client.put_object(Bucket=s3_bucket, Key="md5", Body=b"hello", ContentMD5=wrong)
    assert error_code(excinfo) == ("BadDigest", 400)
    right = b64(hashlib.md5(b"hello").digest())
    client.put_object(Bucket=s3_bucket, Key="md5", Body=b"hello", ContentMD5=right)


def put_with_checksum(
    client: S3Client, bucket: str, algorithm: str, body: bytes, *, of: bytes
) -> None:
    """PUT ``body`` declaring the ``algorithm`` checksum of ``of``."""
    if algorithm == "CRC32":
        crc32 = b64(zlib.crc32(of).to_bytes(4, "big"))
        client.put_object(Bucket=bucket, Key="sum", Body=body, ChecksumCRC32=crc32)
    elif algorithm == "SHA1":
        sha1 = b64(hashlib.sha1(of).digest())
        client.put_object(Bucket=bucket, Key="sum", Body=body, ChecksumSHA1=sha1)
    else:
        sha256 = b64(hashlib.sha256(of).digest())
        client.put_object(Bucket=bucket, Key="sum", Body=body, ChecksumSHA256=sha256)


@pytest.mark.parametrize("algorithm", ["SHA256", "SHA1", "CRC32"])
def test_seaweed_rejects_wrong_checksum(
    seaweed: SeaweedServer, s3_bucket: str, algorithm: str
) -> None:
    client = seaweed.client()
    with pytest.raises(ClientError) as excinfo:
        put_with_checksum(client, s3_bucket, algorithm, b"hello", of=b"hellx")
    assert error_code(excinfo) == ("BadDigest", 400)
    with pytest.raises(ClientError) as missing:
        client.head_object(Bucket=s3_bucket, Key="sum")
    assert error_code(missing) == ("404", 404), "a rejected body must not be stored"
    put_with_checksum(client, s3_bucket, algorithm, b"hello", of=b"hello")
    head = client.head_object(Bucket=s3_bucket, Key="sum", ChecksumMode="ENABLED")
    assert head["ContentLength"] == 5


def test_seaweed_if_none_match(seaweed: SeaweedServer, s3_bucket: str) -> None:
    client = seaweed.client()
    client.put_object(Bucket=s3_bucket, Key="once", Body=b"1", IfNoneMatch="*")
    with pytest.raises(ClientError) as excinfo:
        client.put_object(Bucket=s3_bucket, Key="once", Body=b"2", IfNoneMatch="*")
    assert error_code(excinfo) == ("PreconditionFailed", 412)


def test_seaweed_missing_bucket_is_no_such_bucket(seaweed: SeaweedServer) -> None:
    client = seaweed.client()
    with pytest.raises(ClientError) as put:
        client.put_object(Bucket=MISSING_BUCKET, Key="k", Body=b"x")
    assert error_code(put) == ("NoSuchBucket", 404)
    with pytest.raises(ClientError) as mpu:
        client.create_multipart_upload(Bucket=MISSING_BUCKET, Key="k")
    assert error_code(mpu) == ("NoSuchBucket", 404)
    names = [b.get("Name") for b in client.list_buckets()["Buckets"]]
    assert MISSING_BUCKET not in names, "the bucket must not be auto-created"


def test_limited_identity_on_its_bucket(limited_client: S3Client) -> None:
    limited_client.put_object(Bucket=ALLOWED_BUCKET, Key="limited/k", Body=b"ok")
    body = limited_client.get_object(Bucket=ALLOWED_BUCKET, Key="limited/k")["Body"].read()
    assert body == b"ok"
    assert limited_client.list_objects_v2(Bucket=ALLOWED_BUCKET, Prefix="limited/")["KeyCount"] == 1
    upload = limited_client.create_multipart_upload(Bucket=ALLOWED_BUCKET, Key="limited/mpu")
    limited_client.abort_multipart_upload(
        Bucket=ALLOWED_BUCKET, Key="limited/mpu", UploadId=upload["UploadId"]
    )


def test_limited_identity_denied_elsewhere(limited_client: S3Client, s3_bucket: str) -> None:
    for bucket in (s3_bucket, MISSING_BUCKET):
        with pytest.raises(ClientError) as put:
            limited_client.put_object(Bucket=bucket, Key="k", Body=b"x")
        assert error_code(put) == ("AccessDenied", 403), bucket
        with pytest.raises(ClientError) as mpu:
            limited_client.create_multipart_upload(Bucket=bucket, Key="k")
        assert error_code(mpu) == ("AccessDenied", 403), bucket
    with pytest.raises(ClientError) as get:
        limited_client.get_object(Bucket=s3_bucket, Key="k")
    assert error_code(get) == ("AccessDenied", 403)
    with pytest.raises(ClientError) as create:
        limited_client.create_bucket(Bucket="limited-may-not-create")
    assert error_code(create) == ("AccessDenied", 403)


def test_wrong_credentials(seaweed: SeaweedServer) -> None:
    bad_secret = seaweed.client(aws_secret_access_key="wrong")
    with pytest.raises(ClientError) as sig:
        bad_secret.list_buckets()
    assert error_code(sig) == ("SignatureDoesNotMatch", 403)
    unknown = seaweed.client(aws_access_key_id="NOSUCHKEY", aws_secret_access_key="wrong")
    with pytest.raises(ClientError) as key:
        unknown.list_buckets()
    assert error_code(key) == ("InvalidAccessKeyId", 403)


def test_seaweed_run_cli(tmp_path: Path) -> None:
    script = (
        "import boto3, os, sys; c = boto3.client('s3');"
        "c.put_object(Bucket='cli-bucket', Key='k', Body=b'v');"
        "print(os.environ['AWS_ENDPOINT_URL']); sys.exit(7)"
    )
    result = subprocess.run(
        [sys.executable, "-m", "devtools.seaweed", "run", "--bucket", "cli-bucket",
         "--data-dir", str(tmp_path / "sw"), "--", sys.executable, "-c", script],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 7, result.stderr
    assert result.stdout.startswith("http://127.0.0.1:")
    assert (tmp_path / "sw" / "weed.log").stat().st_size > 0
    assert list(tmp_path.glob("sw/weed.log.failed-*")) == []


def test_seaweed_restart_keeps_data(tmp_path: Path) -> None:
    with SeaweedServer(tmp_path / "sw", buckets=["restart"]) as server:
        first_pid = server.pid
        server.client().put_object(Bucket="restart", Key="k", Body=b"kept")
        server.stop()
        assert not server.running
        server.start()
        assert server.pid != first_pid
        assert server.client().get_object(Bucket="restart", Key="k")["Body"].read() == b"kept"
    assert not server.running


# --------------------------------------------------------------------------- moto


def test_moto_put_get(moto_client: S3Client, moto_bucket: str) -> None:
    assert moto_bucket == MOTO_BUCKET
    moto_client.put_object(Bucket=moto_bucket, Key="a/b", Body=b"moto")
    assert moto_client.get_object(Bucket=moto_bucket, Key="a/b")["Body"].read() == b"moto"


def test_moto_bucket_is_reset(moto_client: S3Client, moto_bucket: str) -> None:
    assert moto_client.list_objects_v2(Bucket=moto_bucket)["KeyCount"] == 0
    names = [b.get("Name") for b in moto_client.list_buckets()["Buckets"]]
    assert names == [MOTO_BUCKET]


def test_moto_env(
    moto_env: dict[str, str], moto_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in moto_env.items():
        monkeypatch.setenv(name, value)
    boto3.session.Session().client("s3").put_object(Bucket=moto_bucket, Key="env", Body=b"1")


def test_limited_identity_list_buckets(limited_client: S3Client, s3_bucket: str) -> None:
    """ListBuckets is allowed but shows only the buckets the identity has actions on."""
    names = [b.get("Name") for b in limited_client.list_buckets()["Buckets"]]
    assert names == [ALLOWED_BUCKET]


def test_no_fixture_is_copied_between_test_modules() -> None:
    """A fixture two test modules need lives once, in conftest.py (a module may still override
    a conftest fixture, e.g. a seed, under its own name)."""
    import ast  # noqa: PLC0415
    from collections import defaultdict  # noqa: PLC0415

    defined: dict[str, list[str]] = defaultdict(list)
    tests = Path(__file__).resolve().parent
    for path in sorted(tests.rglob("test_*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.FunctionDef) and any(
                "fixture" in ast.unparse(d) for d in node.decorator_list
            ):
                defined[node.name].append(path.name)
    copied = {name: files for name, files in defined.items() if len(files) > 1}
    assert not copied, f"fixtures in several test modules (move them to conftest.py): {copied}"
