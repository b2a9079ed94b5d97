"""S3 object options, each read back from the server after a real upload."""

from __future__ import annotations

import gzip
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import zstandard

from tests.helpers import get_body, list_objects, make_files, run_cli

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from devtools.seaweed import SeaweedServer


def upload(seaweed: SeaweedServer, bucket: str, spool: Path, *options: str) -> tuple[int, str]:
    result = run_cli(*options, spool, f"s3://{bucket}/o/", env=seaweed.env())
    return result.returncode, result.stderr


def test_content_type_guessed_from_extension_and_overridable(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path
) -> None:
    (spool_dir / "new" / "a.json").write_text("{}")
    (spool_dir / "new" / "b.csv").write_text("x,y")
    code, err = upload(seaweed, s3_bucket, spool_dir)
    assert code == 0, err
    client = seaweed.client()
    assert client.head_object(Bucket=s3_bucket, Key="o/a.json")["ContentType"] == (
        "application/json"
    )
    assert client.head_object(Bucket=s3_bucket, Key="o/b.csv")["ContentType"] == "text/csv"
    (spool_dir / "new" / "c.json").write_text("{}")
    code, err = upload(seaweed, s3_bucket, spool_dir, "--content-type", "text/plain")
    assert code == 0, err
    assert client.head_object(Bucket=s3_bucket, Key="o/c.json")["ContentType"] == "text/plain"


def test_metadata_and_tags(seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path) -> None:
    make_files(spool_dir / "new", 1)
    code, err = upload(
        seaweed, s3_bucket, spool_dir,
        "--metadata", "source=app1", "--metadata", "team=data=eng",
        "--tag", "retention=30d", "--tag", "pii=no",
    )  # fmt: skip
    assert code == 0, err
    client = seaweed.client()
    head = client.head_object(Bucket=s3_bucket, Key="o/f00000.dat")
    assert head["Metadata"] == {"source": "app1", "team": "data=eng"}
    tags = client.get_object_tagging(Bucket=s3_bucket, Key="o/f00000.dat")["TagSet"]
    assert {t["Key"]: t["Value"] for t in tags} == {"retention": "30d", "pii": "no"}


def test_storage_class(seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path) -> None:
    make_files(spool_dir / "new", 1)
    code, err = upload(seaweed, s3_bucket, spool_dir, "--storage-class", "STANDARD_IA")
    assert code == 0, err
    head = seaweed.client().head_object(Bucket=s3_bucket, Key="o/f00000.dat")
    assert head.get("StorageClass") == "STANDARD_IA"


def test_sse_aes256(seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path) -> None:
    contents = make_files(spool_dir / "new", 1)
    code, err = upload(seaweed, s3_bucket, spool_dir, "--sse", "AES256")
    assert code == 0, err
    client = seaweed.client()
    head = client.head_object(Bucket=s3_bucket, Key="o/f00000.dat")
    assert head.get("ServerSideEncryption") == "AES256"
    assert get_body(client, s3_bucket, "o/f00000.dat") == contents["f00000.dat"]


def test_sse_kms_and_acl_on_moto(
    moto_bucket: str, moto_client: S3Client, moto_env: dict[str, str], spool_dir: Path
) -> None:
    make_files(spool_dir / "new", 1)
    result = run_cli(
        "--sse", "aws:kms", "--sse-kms-key-id", "alias/spool", "--acl", "bucket-owner-full-control",
        spool_dir, f"s3://{moto_bucket}/o/", env=moto_env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    head = moto_client.head_object(Bucket=moto_bucket, Key="o/f00000.dat")
    assert head["ServerSideEncryption"] == "aws:kms"
    assert "alias/spool" in head["SSEKMSKeyId"]
    grants = moto_client.get_object_acl(Bucket=moto_bucket, Key="o/f00000.dat")["Grants"]
    assert any(g["Permission"] == "FULL_CONTROL" for g in grants)


def test_public_read_acl_on_moto(
    moto_bucket: str, moto_client: S3Client, moto_env: dict[str, str], spool_dir: Path
) -> None:
    make_files(spool_dir / "new", 1)
    result = run_cli("--acl", "public-read", spool_dir, f"s3://{moto_bucket}/o/", env=moto_env)
    assert result.returncode == 0, result.stderr
    grants = moto_client.get_object_acl(Bucket=moto_bucket, Key="o/f00000.dat")["Grants"]
    assert any(
        g["Permission"] == "READ" and g["Grantee"].get("URI", "").endswith("/global/AllUsers")
        for g in grants
    ), grants


@pytest.mark.parametrize("engine", ["obstore", "boto3"])
def test_path_addressing_style(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, engine: str
) -> None:
    contents = make_files(spool_dir / "new", 2)
    code, err = upload(
        seaweed, s3_bucket, spool_dir, "--addressing-style", "path", "--engine", engine
    )
    assert code == 0, err
    client = seaweed.client()
    for name, data in contents.items():
        assert get_body(client, s3_bucket, f"o/{name}") == data


def test_kms_key_without_kms_is_usage_error(spool_dir: Path) -> None:
    result = run_cli("--sse-kms-key-id", "k", spool_dir, "noop")
    assert result.returncode == 2
    assert "--sse aws:kms" in result.stderr


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_compress_adds_suffix_and_encoding(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, kind: str
) -> None:
    data = b"line of text\n" * 5000
    (spool_dir / "new" / "log.txt").write_bytes(data)
    (spool_dir / "new" / "already.gz").write_bytes(gzip.compress(b"inner"))
    code, err = upload(seaweed, s3_bucket, spool_dir, "--compress", kind)
    assert code == 0, err
    client = seaweed.client()
    suffix = ".gz" if kind == "gzip" else ".zst"
    assert set(list_objects(client, s3_bucket)) == {f"o/log.txt{suffix}", "o/already.gz"}
    obj = client.get_object(Bucket=s3_bucket, Key=f"o/log.txt{suffix}")
    assert obj["ContentEncoding"] == kind
    assert obj["ContentType"] == "text/plain"
    raw = obj["Body"].read()
    assert len(raw) < len(data) // 10
    if kind == "gzip":
        assert gzip.decompress(raw) == data
    else:
        assert zstandard.ZstdDecompressor().decompress(raw) == data
    # never compressed twice
    assert gzip.decompress(get_body(client, s3_bucket, "o/already.gz")) == b"inner"
    assert (spool_dir / "completed" / "log.txt").read_bytes() == data
    assert list((spool_dir / ".spool_tool" / "tmp").iterdir()) == []


def test_compress_large_file_multipart(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path
) -> None:
    data = os.urandom(3 * 1024 * 1024) * 4  # 12 MiB, compressible 4:1
    (spool_dir / "new" / "big.bin").write_bytes(data)
    code, err = upload(
        seaweed, s3_bucket, spool_dir, "--compress", "gzip", "--multipart-threshold", "5MiB",
        "--part-size", "5MiB",
    )  # fmt: skip
    assert code == 0, err
    assert gzip.decompress(get_body(seaweed.client(), s3_bucket, "o/big.bin.gz")) == data


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_verify_before_delete_keeps_files_whose_object_is_gone(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path
) -> None:
    make_files(spool_dir / "new", 3)
    code, err = upload(seaweed, s3_bucket, spool_dir, "--no-cleanup")
    assert code == 0, err
    client = seaweed.client()
    client.delete_object(Bucket=s3_bucket, Key="o/f00001.dat")
    client.put_object(Bucket=s3_bucket, Key="o/f00002.dat", Body=b"changed")
    completed = spool_dir / "completed"
    for path in completed.iterdir():
        _age(path, 7200)
    code, err = upload(seaweed, s3_bucket, spool_dir, "--verify-before-delete", "--no-upload")
    assert code == 1
    assert "no longer exists" in err
    assert sorted(p.name for p in completed.iterdir()) == ["f00001.dat", "f00002.dat"]
