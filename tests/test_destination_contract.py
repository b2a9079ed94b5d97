"""One contract, every destination: noop, moto (in-process HTTP) and SeaweedFS on each engine of
``engines.ENGINES`` on its own.

The Destination protocol (spool_tool.destinations.base): ``upload`` returns only once the
object is confirmed, reads through the given fd, never closes it, reports a multipart UploadId
before the first part and clears it after; errors are spool_tool's own classes.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from spool_tool.config import Config, S3Options, parse_destination
from spool_tool.destinations import make_destination
from spool_tool.destinations.engines import ENGINES
from spool_tool.errors import FatalError
from spool_tool.spoolfs import open_source
from tests.conftest import MISSING_BUCKET, MOTO_BUCKET

if TYPE_CHECKING:
    from collections.abc import Iterator

    from devtools.seaweed import SeaweedServer
    from spool_tool.destinations.base import Destination

MiB = 1024 * 1024
KINDS = ["noop", "moto-boto3", *(f"seaweed-{engine.name}" for engine in ENGINES)]


@pytest.fixture(params=KINDS)
def target(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[tuple[str, Config]]:
    kind: str = request.param
    spool = tmp_path / "spool"
    options = S3Options(multipart_threshold=5 * MiB, part_size=5 * MiB, addressing_style="path")
    if kind == "noop":
        yield kind, Config(spool_dirs=(spool,), destination=parse_destination("noop"))
        return
    if kind.startswith("moto"):
        env: dict[str, str] = request.getfixturevalue("moto_env")
        bucket: str = request.getfixturevalue("moto_bucket")
        options = replace(options, engine="boto3")
    else:
        server: SeaweedServer = request.getfixturevalue("seaweed")
        env = server.env()
        bucket = request.getfixturevalue("s3_bucket")
        options = replace(options, engine=kind.split("-")[1])  # type: ignore[arg-type]
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    yield (
        kind,
        Config(spool_dirs=(spool,), destination=parse_destination(f"s3://{bucket}/c/"), s3=options),
    )


def _file(tmp_path: Path, size: int) -> Path:
    path = tmp_path / f"f{size}"
    path.write_bytes(os.urandom(size))
    return path


@pytest.mark.parametrize("size", [0, 1000, 11 * MiB])
def test_upload_confirms_the_whole_object(
    target: tuple[str, Config], tmp_path: Path, size: int
) -> None:
    kind, config = target
    destination: Destination = make_destination(config)
    path = _file(tmp_path, size)
    source = open_source(path)
    ids: list[str | None] = []
    try:
        result = destination.upload(source, f"c/{path.name}", ids.append)
        assert os.fstat(source.fd)  # never closed by the destination
        if kind.startswith("seaweed"):  # the engine under test sent it, not another
            assert destination.engine.name == kind.split("-")[1]  # type: ignore[attr-defined]
    finally:
        source.close()
        destination.close()
    assert result.size == size
    assert result.key == f"c/{path.name}"
    if kind == "noop":
        assert ids == []
        return
    if size >= config.s3.multipart_threshold:
        assert len(ids) == 2  # announced before the first part, cleared after
        assert ids[0]
        assert ids[1] is None
    else:
        assert ids == []
    info = make_destination(config).head(f"c/{path.name}")
    assert info is not None
    assert info.size == size


def test_abort_of_an_unknown_upload_is_not_an_error(target: tuple[str, Config]) -> None:
    _, config = target
    destination = make_destination(config)
    try:
        if config.destination.scheme == "s3":
            # a multipart upload we really open, then abort twice (the second is NoSuchUpload)
            client = destination.client  # type: ignore[attr-defined]
            created = client.create_multipart_upload(Bucket=config.destination.bucket, Key="c/x")
            destination.abort_upload("c/x", created["UploadId"])
            destination.abort_upload("c/x", created["UploadId"])
            uploads = client.list_multipart_uploads(Bucket=config.destination.bucket)
            assert not uploads.get("Uploads")
        else:
            destination.abort_upload("c/x", "no-such-upload-id")
    finally:
        destination.close()


def test_head_of_a_missing_object_is_none(target: tuple[str, Config]) -> None:
    _, config = target
    destination = make_destination(config)
    try:
        assert destination.head("c/does-not-exist") is None
    finally:
        destination.close()


def test_missing_bucket_is_fatal(target: tuple[str, Config], tmp_path: Path) -> None:
    kind, config = target
    if kind == "noop":
        pytest.skip("noop has no bucket")
    missing = MISSING_BUCKET if kind.startswith("seaweed") else f"{MOTO_BUCKET}-missing"
    config = replace(config, destination=parse_destination(f"s3://{missing}/c/"))
    destination = make_destination(config)
    source = open_source(_file(tmp_path, 10))
    try:
        with pytest.raises(FatalError, match="NoSuchBucket"):
            destination.preflight()
        with pytest.raises(FatalError, match="NoSuchBucket"):
            destination.upload(source, "c/x", lambda _: None)
    finally:
        source.close()
        destination.close()
