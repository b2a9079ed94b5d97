"""``--preserve-mtime``: the source mtime in the object metadata key rclone reads (``mtime``),
on both data paths and for multipart uploads, read back from SeaweedFS."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spool_tool.destinations.base import rclone_mtime
from tests.helpers import run_cli

if TYPE_CHECKING:
    from devtools.seaweed import SeaweedServer

MTIME_NS = 1354040105_123456789


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0"),
        (5, "0.000000005"),
        (1354040105_000000000, "1354040105"),
        (1354040105_500000000, "1354040105.5"),
        (MTIME_NS, "1354040105.123456789"),
        (-1_500_000_000, "-1.5"),
    ],
)
def test_rclone_mtime(ns: int, text: str) -> None:
    assert rclone_mtime(ns) == text


@given(st.integers(-(2**62), 2**62))
def test_rclone_mtime_is_exact(ns: int) -> None:
    text = rclone_mtime(ns)
    negative = text.startswith("-")
    whole, _, fraction = text.removeprefix("-").partition(".")
    assert not fraction.endswith("0")
    value = int(whole) * 10**9 + int(fraction.ljust(9, "0") or "0")
    assert (-value if negative else value) == ns


@pytest.mark.parametrize("engine", ["obstore", "boto3"])
def test_preserve_mtime_metadata(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, engine: str
) -> None:
    new = spool_dir / "new"
    (new / "small.json").write_bytes(b"{}")
    (new / "big.bin").write_bytes(os.urandom(6 * 1024 * 1024))  # multipart
    (new / "plain.txt").write_bytes(b"x")
    for name in ("small.json", "big.bin"):
        os.utime(new / name, ns=(MTIME_NS, MTIME_NS))
    result = run_cli(
        "--preserve-mtime", "--engine", engine, "--multipart-threshold", "5MiB",
        "--part-size", "5MiB", new.parent, f"s3://{s3_bucket}/m/",
        env={**seaweed.env(), "SPOOL_TOOL_INCLUDE": "small.json\nbig.bin"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    client = seaweed.client()
    for key in ("m/small.json", "m/big.bin"):
        assert client.head_object(Bucket=s3_bucket, Key=key)["Metadata"] == {
            "mtime": "1354040105.123456789"
        }, key
    result = run_cli(new.parent, f"s3://{s3_bucket}/m/", env=seaweed.env())  # without the flag
    assert result.returncode == 0, result.stderr
    assert client.head_object(Bucket=s3_bucket, Key="m/plain.txt")["Metadata"] == {}


def test_preserve_mtime_beside_metadata(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path
) -> None:
    path = spool_dir / "new" / "x.csv"
    path.write_bytes(b"a,b\n")
    os.utime(path, ns=(MTIME_NS, 1354040105_500000000))
    result = run_cli(
        "--preserve-mtime", "--metadata", "source=a", "--compress", "gzip", spool_dir,
        f"s3://{s3_bucket}/c/", env=seaweed.env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    head = seaweed.client().head_object(Bucket=s3_bucket, Key="c/x.csv.gz")
    assert head["Metadata"] == {"source": "a", "mtime": "1354040105.5"}  # the source's time
