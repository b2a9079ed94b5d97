"""``--require-marker SUFFIX``: NAME ships only once NAME+SUFFIX exists; markers are never
uploaded and follow their file into ``completed/``, also through a SIGKILL mid-move."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from spool_tool.scan import ScanOptions, iter_eligible
from spool_tool.spoolfs import SpoolFS
from tests.helpers import get_body, list_objects, run_cli

if TYPE_CHECKING:
    from devtools.seaweed import SeaweedServer

DONE = ScanOptions(marker_suffix=".done")
UNIQUE = "{uuid4}/{fname}"


def eligible(new: Path) -> list[str]:
    found = iter_eligible(new, hold_for_seconds=0, now=0, options=DONE)
    return sorted(c.name for c in found)


def test_file_waits_for_its_marker(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_bytes(b"a")
    (tmp_path / "b.json").write_bytes(b"b")
    (tmp_path / "b.json.done").write_bytes(b"")
    assert eligible(tmp_path) == ["b.json"]  # the marker itself never is


def test_symlink_marker_does_not_count(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_bytes(b"a")
    (tmp_path / "elsewhere").write_bytes(b"")
    (tmp_path / "a.json.done").symlink_to(tmp_path / "elsewhere")
    assert eligible(tmp_path) == []  # a.json waits (and so does elsewhere, for its own)


def test_marker_follows_into_completed_with_the_clash_name(tmp_path: Path) -> None:
    new, completed = tmp_path / "new", tmp_path / "completed"
    new.mkdir()
    completed.mkdir()
    (new / "x.json").write_bytes(b"new")
    (new / "x.json.done").write_bytes(b"")
    (completed / "x.json").write_bytes(b"older")
    dst = SpoolFS().move_to_completed(new / "x.json", completed, ".done")
    assert dst.name == "x~1.json"
    assert sorted(os.listdir(completed)) == ["x.json", "x~1.json", "x~1.json.done"]
    assert os.listdir(new) == []


def test_markers_never_uploaded_and_follow(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path
) -> None:
    new = spool_dir / "new"
    for name in ("ready.json", "waiting.json"):
        (new / name).write_bytes(name.encode())
    (new / "ready.json.done").write_bytes(b"")
    (new / "orphan.done").write_bytes(b"")  # a marker without its file: left alone
    result = run_cli(
        "--require-marker", ".done", spool_dir, f"s3://{s3_bucket}/", env=seaweed.env()
    )
    assert result.returncode == 0, result.stderr
    assert sorted(list_objects(seaweed.client(), s3_bucket)) == ["ready.json"]
    assert sorted(os.listdir(new)) == ["orphan.done", "waiting.json"]
    assert sorted(os.listdir(spool_dir / "completed")) == ["ready.json", "ready.json.done"]


def test_cleanup_deletes_markers_with_verify(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path
) -> None:
    new = spool_dir / "new"
    (new / "a.json").write_bytes(b"a")
    (new / "a.json.done").write_bytes(b"")
    args = ["--require-marker", ".done", "--verify-before-delete", "--delete-after", "0"]
    result = run_cli(*args, spool_dir, f"s3://{s3_bucket}/", env=seaweed.env())
    assert result.returncode == 0, result.stderr
    assert os.listdir(spool_dir / "completed") == []  # marker deleted without a HEAD


@pytest.mark.parametrize("point", ["after_link", "after_marker_link", "after_move"])
def test_sigkill_mid_move_then_rerun(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, point: str
) -> None:
    new = spool_dir / "new"
    contents = {f"f{i}.json": os.urandom(32) for i in range(3)}
    for name, data in contents.items():
        (new / name).write_bytes(data)
        (new / f"{name}.done").write_bytes(b"")
    args: list[str | Path] = ["--require-marker", ".done", "--format", UNIQUE, spool_dir]
    args.append(f"s3://{s3_bucket}/")
    crash = {**seaweed.env(), "SPOOL_TOOL_TESTING": "1", "SPOOL_TOOL_CRASH_AT": point}
    killed = run_cli(*args, env=crash)
    assert killed.returncode == -9, killed.stderr
    result = run_cli(*args, env=seaweed.env())
    assert result.returncode == 0, result.stderr
    client = seaweed.client()
    objects = list_objects(client, s3_bucket)
    assert sorted(get_body(client, s3_bucket, k) for k in objects) == sorted(contents.values())
    assert os.listdir(new) == []
    expected = sorted([*contents, *(f"{n}.done" for n in contents)])
    assert sorted(os.listdir(spool_dir / "completed")) == expected
