"""The whole job against a real S3 server (SeaweedFS over HTTP on 127.0.0.1)."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from devtools.seaweed import free_port
from tests.conftest import LIMITED_ACCESS_KEY, LIMITED_SECRET_KEY, MISSING_BUCKET
from tests.helpers import (
    get_body,
    list_objects,
    make_files,
    open_multipart_uploads,
    run_cli,
    snapshot,
)

if TYPE_CHECKING:
    from devtools.seaweed import SeaweedServer

HIVE = "year={m_YYYY}/month={m_MM}/day={m_DD}/{fname}"


@pytest.fixture(params=["obstore", "boto3"], autouse=True)
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs against both data paths (SPOOL_TOOL_ENGINE reaches the CLI)."""
    value: str = request.param
    monkeypatch.setenv("SPOOL_TOOL_ENGINE", value)
    return value


def test_hive_upload_moves_files_and_objects_match(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path
) -> None:
    new = spool_dir / "new"
    contents = make_files(new, 20, size=1000)
    for name in contents:  # 2020-04-30 23:59:59 UTC
        os.utime(new / name, (1588291199, 1588291199))
    result = run_cli("--format", HIVE, spool_dir, f"s3://{s3_bucket}/events", env=seaweed.env())
    assert result.returncode == 0, result.stderr
    client = seaweed.client()
    objects = list_objects(client, s3_bucket)
    expected = {f"events/year=2020/month=04/day=30/{name}" for name in contents}
    assert set(objects) == expected
    for name, data in contents.items():
        assert get_body(client, s3_bucket, f"events/year=2020/month=04/day=30/{name}") == data
    assert list(new.iterdir()) == []
    assert sorted(p.name for p in (spool_dir / "completed").iterdir()) == sorted(contents)


@pytest.mark.parametrize("checksum", ["auto", "sha256", "crc32", "sha1", "off"])
def test_every_checksum_setting_uploads_verified(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, checksum: str, engine: str
) -> None:
    contents = make_files(spool_dir / "new", 3, size=5000)
    result = run_cli("--checksum", checksum, spool_dir, f"s3://{s3_bucket}/", env=seaweed.env())
    if engine == "obstore" and checksum not in {"auto", "sha256"}:  # said clearly
        assert result.returncode == 2
        assert "--engine boto3" in result.stderr
        return
    assert result.returncode == 0, result.stderr
    client = seaweed.client()
    for name, data in contents.items():
        assert get_body(client, s3_bucket, name) == data


def test_when_required_environment_switch_is_honoured(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, engine: str
) -> None:
    contents = make_files(spool_dir / "new", 2)
    env = {**seaweed.env(), "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required"}
    result = run_cli(spool_dir, f"s3://{s3_bucket}", env=env)
    if engine == "obstore":
        assert result.returncode == 2
        return
    assert result.returncode == 0, result.stderr
    assert set(list_objects(seaweed.client(), s3_bucket)) == set(contents)


def test_multipart_upload_is_identical_and_leaves_no_open_upload(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path
) -> None:
    big = spool_dir / "new" / "big.bin"
    data = os.urandom(13 * 1024 * 1024 + 17)
    big.write_bytes(data)
    result = run_cli(
        "--multipart-threshold",
        "5MiB",
        "--part-size",
        "5MiB",
        spool_dir,
        f"s3://{s3_bucket}/mp/",
        env=seaweed.env(),
    )
    assert result.returncode == 0, result.stderr
    client = seaweed.client()
    body = get_body(client, s3_bucket, "mp/big.bin")
    assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
    assert open_multipart_uploads(client, s3_bucket) == []


def test_zero_byte_file_becomes_zero_byte_object(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path
) -> None:
    (spool_dir / "new" / "empty").write_bytes(b"")
    result = run_cli(spool_dir, f"s3://{s3_bucket}", env=seaweed.env())
    assert result.returncode == 0, result.stderr
    assert list_objects(seaweed.client(), s3_bucket) == {"empty": 0}
    assert (spool_dir / "completed" / "empty").exists()


def test_awkward_names_round_trip(seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path) -> None:
    names = [
        "with space.txt",
        "-leading-dash",
        "ünïcødé €.json",
        "100%.csv",
        "k=v.txt",
        "..dots..",
        "a+b&c;d.txt",
        "日本語",
    ]
    for name in names:
        (spool_dir / "new" / name).write_text(name)
    result = run_cli(spool_dir, f"s3://{s3_bucket}/x/", env=seaweed.env())
    assert result.returncode == 0, result.stderr
    client = seaweed.client()
    assert set(list_objects(client, s3_bucket)) == {f"x/{n}" for n in names}
    for name in names:
        assert get_body(client, s3_bucket, f"x/{name}") == name.encode()


def test_no_clobber_keeps_existing_object_and_file(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path
) -> None:
    client = seaweed.client()
    client.put_object(Bucket=s3_bucket, Key="f00000.dat", Body=b"someone else's")
    make_files(spool_dir / "new", 2)
    result = run_cli("--no-clobber", spool_dir, f"s3://{s3_bucket}", env=seaweed.env())
    assert result.returncode == 1
    assert "already exists" in result.stderr
    assert get_body(client, s3_bucket, "f00000.dat") == b"someone else's"
    assert (spool_dir / "new" / "f00000.dat").exists()
    assert (spool_dir / "completed" / "f00001.dat").exists()


def test_wrong_secret_stops_run_with_one_clear_error(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path
) -> None:
    make_files(spool_dir / "new", 50)
    before = snapshot(spool_dir / "new")
    env = {**seaweed.env(), "AWS_SECRET_ACCESS_KEY": "wrong"}
    result = run_cli("--concurrency", "1", spool_dir, f"s3://{s3_bucket}", env=env)
    assert result.returncode == 1
    assert "SignatureDoesNotMatch" in result.stderr
    assert "Traceback" not in result.stderr
    failed = [line for line in result.stderr.splitlines() if "ERROR failed " in line]
    assert len(failed) <= 2, result.stderr  # stopped by the pre-flight or the first auth error
    assert snapshot(spool_dir / "new") == before
    assert list_objects(seaweed.client(), s3_bucket) == {}


def test_unknown_access_key(seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path) -> None:
    make_files(spool_dir / "new", 2)
    env = {**seaweed.env(), "AWS_ACCESS_KEY_ID": "NOBODY"}
    result = run_cli(spool_dir, f"s3://{s3_bucket}", env=env)
    assert result.returncode == 1
    assert "InvalidAccessKeyId" in result.stderr
    assert len(list((spool_dir / "new").iterdir())) == 2


def test_missing_bucket_is_reported_before_any_file_moves(
    seaweed: SeaweedServer, spool_dir: Path
) -> None:
    make_files(spool_dir / "new", 3)
    before = snapshot(spool_dir / "new")
    result = run_cli(spool_dir, f"s3://{MISSING_BUCKET}/p", env=seaweed.env())
    assert result.returncode == 1
    assert MISSING_BUCKET in result.stderr
    assert "NoSuchBucket" in result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot(spool_dir / "new") == before


def test_access_denied_on_prefix(seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path) -> None:
    make_files(spool_dir / "new", 3)
    env = {
        **seaweed.env(),
        "AWS_ACCESS_KEY_ID": LIMITED_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": LIMITED_SECRET_KEY,
    }
    result = run_cli(spool_dir, f"s3://{s3_bucket}/p", env=env)
    assert result.returncode == 1
    assert "AccessDenied" in result.stderr
    assert len(list((spool_dir / "new").iterdir())) == 3


def test_unreachable_endpoint(spool_dir: Path, seaweed: SeaweedServer) -> None:
    make_files(spool_dir / "new", 3)
    url = f"http://127.0.0.1:{free_port()}"
    env = {**seaweed.env(), "AWS_ENDPOINT_URL": url, "AWS_ENDPOINT_URL_S3": url}
    result = run_cli("--endpoint-url", url, spool_dir, "s3://bucket", env=env, timeout=60)
    assert result.returncode == 1
    assert "cannot reach" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(list((spool_dir / "new").iterdir())) == 3


def test_no_credentials(spool_dir: Path, seaweed: SeaweedServer) -> None:
    make_files(spool_dir / "new", 1)
    result = run_cli(
        "--endpoint-url", seaweed.endpoint_url, "--region", "us-east-1", spool_dir, "s3://bucket"
    )
    assert result.returncode == 1
    assert "credentials" in result.stderr
    assert "Traceback" not in result.stderr
    assert (spool_dir / "new" / "f00000.dat").exists()


def test_unknown_profile_is_usage_error(spool_dir: Path) -> None:
    make_files(spool_dir / "new", 1)
    result = run_cli("--profile", "nope", spool_dir, "s3://bucket")
    assert result.returncode == 2
    assert "nope" in result.stderr


def test_server_verifies_checksum(seaweed: SeaweedServer, s3_bucket: str) -> None:
    """What our integrity promise rests on: the server rejects a body that does not match."""
    from botocore.exceptions import ClientError  # noqa: PLC0415

    client = seaweed.client()
    wrong = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    with pytest.raises(ClientError) as info:
        client.put_object(Bucket=s3_bucket, Key="k", Body=b"data", ChecksumSHA256=wrong)
    assert info.value.response["Error"]["Code"] == "BadDigest"
    with pytest.raises(ClientError):
        client.head_object(Bucket=s3_bucket, Key="k")
