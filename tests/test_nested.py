"""Nested spools (issue 11.2): ``--recursive``, ``--max-depth``, ``{relpath}``/``{reldir}``,
``completed/`` mirroring, recursive cleanup, ``--prune-empty-dirs``, ``--watch`` of
subdirectories, and every promise of a flat spool for nested files too (key fixed at first
claim, exactly once through SIGKILL, no symlink followed, dry run changes nothing).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import sqlite3
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from spool_tool import spoolfs
from spool_tool.cleanup import delete_expired
from spool_tool.events import EventBus, FileUploaded
from spool_tool.filters import PathFilter
from spool_tool.keys import FileFacts, KeyTemplate
from spool_tool.prune import prune_empty_dirs
from spool_tool.run import run
from spool_tool.scan import ScanOptions, iter_eligible
from spool_tool.spoolfs import SpoolFS, walk
from spool_tool.watch import Notifier
from tests.faults.runs import Recorder, make_config, mutate_during, run_hooked
from tests.helpers import Daemon, get_body, list_objects, open_multipart_uploads, run_cli, snapshot

if TYPE_CHECKING:
    from devtools.seaweed import SeaweedServer
    from spool_tool.config import Config

RECURSIVE = ScanOptions(max_depth=None)


def nested_config(
    seaweed: SeaweedServer, bucket: str, spool: Path, template: str, concurrency: int = 4
) -> Config:
    """An in-process ``--recursive`` run on the boto3 engine (the fault hook sees its PUTs)."""
    config = make_config(
        spool, bucket, seaweed.endpoint_url, template=template, engine="boto3",
        concurrency=concurrency,
    )  # fmt: skip
    return dataclasses.replace(config, recursive=True)


def tree(new: Path, files: dict[str, bytes]) -> dict[str, bytes]:
    for relpath, data in files.items():
        path = new / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def files_below(root: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every regular file below ``root`` (symlinks not followed)."""
    found: dict[str, bytes] = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            if path.is_file() and not path.is_symlink():
                found[str(path.relative_to(root))] = path.read_bytes()
    return found


TREE = {
    "top.json": b"top",
    "2026/12/01/host-a/x.json": b"a-x",
    "2026/12/01/host-b/x.json": b"b-x",
    "2026/12/02/y.json": b"y",
}


# -- keys ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "relpath", "key"),
    [
        ("{relpath}", "x.json", "x.json"),
        ("{relpath}", "a/b/x.json", "a/b/x.json"),
        ("{reldir}/{fname}", "x.json", "x.json"),
        ("{reldir}/{fname}", "a/b/x.json", "a/b/x.json"),
        ("a/{reldir}/{fname}", "x.json", "a/x.json"),
        ("a/{reldir}/{fname}", "a/b/x.json", "a/a/b/x.json"),
        ("{fname}/{reldir}", "x.json", "x.json"),
        ("{reldir}-{fname}", "x.json", "-x.json"),
        ("{hostname}/{reldir}/{fname_hash}/{fname}", "d/x.json", "h/d/" + "%s/x.json"),
    ],
)
def test_reldir_at_the_top_level_never_makes_a_double_or_leading_slash(
    template: str, relpath: str, key: str
) -> None:
    facts = FileFacts("x.json", "s", 0.0, 0.0, 0.0, hostname="h", relpath=relpath)
    rendered = KeyTemplate.parse(template).render(facts)
    if "%s" in key:
        key = key % rendered.split("/")[2]  # fname_hash: of the base name, checked below
        assert rendered.split("/")[2] == KeyTemplate.parse("{fname_hash}").render(facts)
    assert rendered == key
    assert "//" not in rendered
    assert not rendered.startswith("/")


def test_a_template_of_only_reldir_is_refused() -> None:
    with pytest.raises(Exception, match="empty key"):
        KeyTemplate.parse("{reldir}")


def test_uniqueness_with_recursive_needs_relpath_or_reldir_and_fname() -> None:
    assert KeyTemplate.parse("{fname}").is_unique_per_file
    assert not KeyTemplate.parse("{fname}").is_unique_per_nested_file
    for text in ("{relpath}", "{reldir}/{fname}", "{uuid4}"):
        assert KeyTemplate.parse(text).is_unique_per_nested_file


# -- the walk ------------------------------------------------------------------------------


def test_walk_counts_depth_as_find_does_and_never_follows_a_symlinked_directory(
    tmp_path: Path,
) -> None:
    new = tmp_path / "new"
    tree(new, {"a.txt": b"1", "d1/b.txt": b"2", "d1/d2/c.txt": b"3"})
    outside = tmp_path / "outside"
    tree(outside, {"secret.txt": b"s"})
    (new / "link").symlink_to(outside, target_is_directory=True)

    def regular(depth: int | None) -> set[str]:
        return {rel for rel, st in walk(new, max_depth=depth) if stat.S_ISREG(st.st_mode)}

    assert regular(1) == {"a.txt"}
    assert regular(2) == {"a.txt", "d1/b.txt"}
    assert regular(None) == {"a.txt", "d1/b.txt", "d1/d2/c.txt"}
    everything = {rel for rel, _ in walk(new, max_depth=None)}
    assert "link" in everything  # yielded (reported as a symlink), never entered
    assert not any(rel.startswith("link/") for rel in everything)


def test_scan_skips_an_excluded_subtree_without_entering_it(tmp_path: Path) -> None:
    new = tmp_path / "new"
    tree(new, {"keep/x.json": b"1", "tmp/y.json": b"2", "a/tmp/z.json": b"3", "w.tmp": b"4"})
    (new / "tmp").chmod(0o000)  # entering it would be reported as unreadable
    try:
        options = dataclasses.replace(
            RECURSIVE, path_filter=PathFilter(excludes=("tmp/**", "*.tmp"))
        )
        skipped: list[tuple[Path, str, bool]] = []
        found = iter_eligible(
            new, hold_for_seconds=0, now=time.time(), options=options,
            on_skip=lambda p, why, warn: skipped.append((p, why, warn)),
        )  # fmt: skip
        assert sorted(c.relpath for c in found) == ["a/tmp/z.json", "keep/x.json"]
        assert not [s for s in skipped if s[2]]  # no warning: tmp/ was never opened
    finally:
        (new / "tmp").chmod(0o755)


def test_directory_swapped_for_a_symlink_mid_scan_is_not_entered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scan lists ``new/`` and then enters ``d/``: swapped for a symlink to a directory
    outside the spool in between, it is not entered, and nothing outside is seen."""
    new = tmp_path / "new"
    tree(new, {"first.json": b"1", "d/inside.json": b"2"})
    outside = tmp_path / "outside"
    tree(outside, {"inside.json": b"secret"})
    enter = spoolfs._next_subdir

    def swap_then_enter(*args: Any) -> tuple[int, str] | None:
        if (new / "d").is_dir() and not (new / "d").is_symlink():
            (new / "d").rename(tmp_path / "d.moved")
            (new / "d").symlink_to(outside, target_is_directory=True)
        return enter(*args)

    monkeypatch.setattr(spoolfs, "_next_subdir", swap_then_enter)
    skipped: list[tuple[Path, str, bool]] = []
    found = iter_eligible(
        new, hold_for_seconds=0, now=time.time(), options=RECURSIVE,
        on_skip=lambda p, why, warn: skipped.append((p, why, warn)),
    )  # fmt: skip
    assert [c.relpath for c in found] == ["first.json"]
    assert skipped == [(new / "d", "no longer a directory (symlinks are not followed)", False)]
    assert files_below(outside) == {"inside.json": b"secret"}


def test_scan_streams_windows_across_the_tree_oldest_first(tmp_path: Path) -> None:
    """A window may hold files of several directories; within it, oldest first."""
    new = tmp_path / "new"
    now = time.time()
    for i, rel in enumerate(["z/old.json", "a/new.json", "mid.json", "a/b/oldest.json"]):
        tree(new, {rel: b"x"})
        age = {"a/b/oldest.json": 400, "z/old.json": 300, "mid.json": 200}.get(rel, 100 + i)
        os.utime(new / rel, (now - age, now - age))
    found = [c.relpath for c in iter_eligible(new, hold_for_seconds=0, now=now, options=RECURSIVE)]
    assert found == ["a/b/oldest.json", "z/old.json", "mid.json", "a/new.json"]


# -- cleanup and pruning -------------------------------------------------------------------


def test_recursive_cleanup_removes_the_directories_it_emptied_only(tmp_path: Path) -> None:
    completed = tmp_path / "completed"
    tree(completed, {"a/b/old.json": b"1", "a/keep/young.json": b"2", "top.json": b"3"})
    (completed / "empty-before").mkdir()  # not emptied by this cleanup: stays
    old = time.time() - 7200
    for rel in ("a/b/old.json", "top.json"):
        os.utime(completed / rel, (old, old))
    outside = tmp_path / "outside"
    tree(outside, {"o.json": b"o"})
    os.utime(outside / "o.json", (old, old))
    (completed / "link").symlink_to(outside, target_is_directory=True)
    delete_expired(
        completed, delete_after_seconds=3600, now=time.time(), fs=SpoolFS(), bus=EventBus(),
        journal=None, options=RECURSIVE,
    )  # fmt: skip
    assert files_below(completed) == {"a/keep/young.json": b"2"}
    assert not (completed / "a" / "b").exists()
    assert (completed / "a" / "keep").is_dir()
    assert (completed / "empty-before").is_dir()
    assert (outside / "o.json").read_bytes() == b"o"  # the symlink was never followed


def test_cleanup_without_recursive_never_enters_a_subdirectory(tmp_path: Path) -> None:
    completed = tmp_path / "completed"
    tree(completed, {"a/old.json": b"1"})
    old = time.time() - 7200
    os.utime(completed / "a" / "old.json", (old, old))
    delete_expired(
        completed, delete_after_seconds=0, now=time.time(), fs=SpoolFS(), bus=EventBus(),
        journal=None,
    )  # fmt: skip
    assert files_below(completed) == {"a/old.json": b"1"}


def test_prune_removes_old_empty_directories_and_never_new_itself(tmp_path: Path) -> None:
    new = tmp_path / "new"
    for rel in ("old/deeper/deepest", "young", "full"):
        (new / rel).mkdir(parents=True)
    (new / "full" / "x.json").write_bytes(b"x")
    outside = tmp_path / "outside-empty"
    outside.mkdir()
    (new / "link").symlink_to(outside, target_is_directory=True)
    old = time.time() - 3600
    for rel in ("old", "old/deeper", "old/deeper/deepest", "full"):
        os.utime(new / rel, (old, old))
    removed = prune_empty_dirs(new, older_than=time.time() - 600, fs=SpoolFS(), options=RECURSIVE)
    assert sorted(removed) == ["old", "old/deeper", "old/deeper/deepest"]
    assert sorted(p.name for p in new.iterdir()) == ["full", "link", "young"]
    assert outside.is_dir()  # a symlinked directory is neither entered nor removed
    assert prune_empty_dirs(new, older_than=time.time() + 10, fs=SpoolFS(dry_run=True),
                            options=RECURSIVE) == ["young"]  # fmt: skip
    assert (new / "young").is_dir()  # the dry run removed nothing
    empty = tmp_path / "empty-new"
    empty.mkdir()
    assert (
        prune_empty_dirs(empty, older_than=time.time() + 10, fs=SpoolFS(), options=RECURSIVE) == []
    )
    assert empty.is_dir()


def test_prune_racing_a_producer_that_writes_into_the_directory_loses_nothing(
    tmp_path: Path,
) -> None:
    """A producer creates a file in an old empty directory between the listing and the
    ``rmdir``: ``rmdir`` refuses, the directory and the file stay, nothing is reported."""
    new = tmp_path / "new"
    (new / "d").mkdir(parents=True)
    old = time.time() - 3600
    os.utime(new / "d", (old, old))

    class Racing(SpoolFS):
        def remove_dir(self, directory_fd: int, name: str) -> bool:
            (new / "d" / "late.json").write_bytes(b"late")  # the producer, just in time
            return super().remove_dir(directory_fd, name)

    removed = prune_empty_dirs(new, older_than=time.time() - 600, fs=Racing(), options=RECURSIVE)
    assert removed == []
    assert (new / "d" / "late.json").read_bytes() == b"late"


# -- options -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "named"),
    [(["--max-depth", "2"], "--max-depth"), (["--prune-empty-dirs"], "--prune-empty-dirs")],
)
def test_nested_options_without_recursive_are_usage_errors(
    spool_dir: Path, args: list[str], named: str
) -> None:
    tree(spool_dir / "new", {"a/x.json": b"x"})
    before = snapshot(spool_dir)
    result = run_cli(*args, spool_dir, "noop")
    assert result.returncode == 2, result.stderr
    assert named in result.stderr
    assert "needs --recursive" in result.stderr
    assert snapshot(spool_dir) == before


def test_recursive_from_the_environment_and_a_warning_for_a_flat_key(spool_dir: Path) -> None:
    tree(spool_dir / "new", {"a/x.json": b"1", "b/x.json": b"2"})
    result = run_cli(
        spool_dir, "noop", env={"SPOOL_TOOL_RECURSIVE": "1", "SPOOL_TOOL_MAX_DEPTH": "2"}
    )
    assert result.returncode == 0, result.stderr
    assert "with --recursive has no {relpath}" in result.stderr
    assert files_below(spool_dir / "completed") == {"a/x.json": b"1", "b/x.json": b"2"}


# -- against SeaweedFS -----------------------------------------------------------------------


def test_recursive_upload_keys_mirroring_and_depth(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path
) -> None:
    contents = tree(spool_dir / "new", {**TREE, "2026/12/01/host-a/deep/z/w.json": b"deep"})
    result = run_cli(
        "--recursive", "--max-depth", "5", "--format", "{relpath}", spool_dir,
        f"s3://{s3_bucket}/p/", env=seaweed.env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    client = seaweed.client()
    shipped = {k: get_body(client, s3_bucket, k) for k in list_objects(client, s3_bucket)}
    assert shipped == {f"p/{rel}": data for rel, data in TREE.items()}  # depth 6 is left
    assert files_below(spool_dir / "completed") == TREE
    assert files_below(spool_dir / "new") == {"2026/12/01/host-a/deep/z/w.json": b"deep"}
    del contents

    tree(spool_dir / "new", {"top2.json": b"t2", "d/e/f.json": b"f"})
    result = run_cli(
        "--recursive", "--format", "r/{reldir}/{m_YYYY}-{fname}", spool_dir, f"s3://{s3_bucket}",
        env=seaweed.env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    year = time.strftime("%Y", time.gmtime())
    keys = set(list_objects(client, s3_bucket, "r/"))
    assert keys == {f"r/{year}-top2.json", f"r/d/e/{year}-f.json",
                    f"r/2026/12/01/host-a/deep/z/{year}-w.json"}  # fmt: skip


def test_recursive_dry_run_lists_relative_paths_and_changes_nothing(spool_dir: Path) -> None:
    tree(spool_dir / "new", TREE)
    before = snapshot(spool_dir)
    result = run_cli("--recursive", "--dry-run", "--format", "{relpath}", spool_dir, "noop")
    assert result.returncode == 0, result.stderr
    for rel in TREE:
        assert f"{spool_dir / 'new' / rel} -> noop://{rel}" in result.stdout
    assert snapshot(spool_dir) == before


def test_filters_match_nested_paths(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path
) -> None:
    tree(spool_dir / "new", {"tmp/a.json": b"1", "b/tmp/c.json": b"2", "b/d.json": b"3",
                             "e.part": b"4", "f/g.part": b"5"})  # fmt: skip
    result = run_cli(
        "--recursive", "--exclude", "/tmp/**", "--exclude", "*.part", "--format", "{relpath}",
        spool_dir, f"s3://{s3_bucket}", env=seaweed.env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert set(list_objects(seaweed.client(), s3_bucket)) == {"b/tmp/c.json", "b/d.json"}
    assert set(files_below(spool_dir / "new")) == {"tmp/a.json", "e.part", "f/g.part"}


def test_symlinked_directory_is_never_followed(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    tree(outside, {"secret.json": b"do not upload me"})
    tree(spool_dir / "new", {"a/x.json": b"x"})
    (spool_dir / "new" / "link").symlink_to(outside, target_is_directory=True)
    result = run_cli("--recursive", "--format", "{relpath}", spool_dir, f"s3://{s3_bucket}",
                     env=seaweed.env())  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert set(list_objects(seaweed.client(), s3_bucket)) == {"a/x.json"}
    assert (outside / "secret.json").read_bytes() == b"do not upload me"
    assert (spool_dir / "new" / "link").is_symlink()


def test_directory_swapped_for_a_symlink_after_the_scan_is_never_read_or_moved(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, tmp_path: Path, s3_env: None
) -> None:
    """``b/`` is swapped for a symlink to a directory outside the spool while ``a/x.json``
    uploads, after the scan listed ``b/y.json``: that file fails alone, nothing outside is
    read, moved or deleted."""
    new = spool_dir / "new"
    tree(new, {"a/x.json": b"x", "b/y.json": b"inside"})
    old = time.time() - 60
    os.utime(new / "a" / "x.json", (old, old))  # shipped first (oldest first)
    outside = tmp_path / "outside"
    tree(outside, {"y.json": b"secret"})

    def swap() -> None:
        (new / "b").rename(tmp_path / "b.moved")
        (new / "b").symlink_to(outside, target_is_directory=True)

    config = nested_config(seaweed, s3_bucket, spool_dir, "{relpath}", concurrency=1)
    recorder = Recorder(s3_bucket)
    summary = run_hooked(config, [mutate_during("PutObject", swap)], recorder)
    assert not summary.ok
    (failure,) = recorder.failed()
    assert failure.path == new / "b" / "y.json"
    assert "symlinks are never followed" in failure.message
    client = seaweed.client()
    assert {k: get_body(client, s3_bucket, k) for k in list_objects(client, s3_bucket)} == {
        "a/x.json": b"x"
    }
    assert files_below(outside) == {"y.json": b"secret"}
    assert files_below(spool_dir / "completed") == {"a/x.json": b"x"}


def test_file_moved_between_subdirectories_mid_upload_ships_once(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, s3_env: None
) -> None:
    """The producer moves ``a/x.json`` to ``b/x.json`` while it uploads. Run 1 reports it
    (its object is complete, at the key of its first claim) and leaves it where the producer
    put it; run 2 finds it by its inode and only moves it: one object, no second PUT."""
    new = spool_dir / "new"
    tree(new, {"a/x.json": b"payload"})
    (new / "b").mkdir()
    config = nested_config(seaweed, s3_bucket, spool_dir, "{uuid4}/{relpath}")

    def move() -> None:
        (new / "a" / "x.json").rename(new / "b" / "x.json")

    first = Recorder(s3_bucket)
    summary = run_hooked(config, [mutate_during("PutObject", move)], first)
    assert not summary.ok
    (failure,) = first.failed()
    assert failure.kind == "changed"
    assert "moved or deleted" in failure.message
    client = seaweed.client()
    (key,) = list_objects(client, s3_bucket)
    assert key.endswith("/a/x.json")  # the key fixed at its first claim
    client.put_object(Bucket=s3_bucket, Key=key, Body=b"marker")  # a second PUT would show
    second = Recorder(s3_bucket)
    rerun = run(config, [second])
    assert rerun.ok, rerun.failures
    assert list(list_objects(client, s3_bucket)) == [key]
    assert get_body(client, s3_bucket, key) == b"marker"
    (uploaded,) = [e for e in second.events if isinstance(e, FileUploaded)]
    assert uploaded.resumed
    assert files_below(spool_dir / "completed") == {"b/x.json": b"payload"}
    assert files_below(new) == {}
    assert _claims(spool_dir) == []


@pytest.mark.parametrize(
    ("where", "args"),
    [
        ("tmp/x.json", ["--exclude", "/tmp/"]),  # into an excluded directory
        ("d1/d2/x.json", ["--max-depth", "2"]),  # beyond --max-depth
    ],
)
def test_file_moved_mid_upload_out_of_reach_loses_its_claim_and_is_never_lost(
    seaweed: SeaweedServer,
    s3_bucket: str,
    spool_dir: Path,
    s3_env: None,
    where: str,
    args: list[str],
) -> None:
    """Moved during its PUT into an excluded directory or beyond ``--max-depth``: the next run
    does not find it, forgets its claim and leaves it alone (its object stays, complete);
    moved back within reach later, it ships again under a key of its own (README: "a whole
    run went by without finding it")."""
    new = spool_dir / "new"
    tree(new, {"a/x.json": b"payload"})
    (new / where).parent.mkdir(parents=True)
    config = nested_config(seaweed, s3_bucket, spool_dir, "{uuid4}/{relpath}")
    config = dataclasses.replace(
        config,
        exclude=("/tmp/",) if "--exclude" in args else (),
        max_depth=2 if "--max-depth" in args else None,
    )

    def move() -> None:
        (new / "a" / "x.json").rename(new / where)

    recorder = Recorder(s3_bucket)
    assert not run_hooked(config, [mutate_during("PutObject", move)], recorder).ok
    assert [f.kind for f in recorder.failed()] == ["changed"]
    client = seaweed.client()
    (first_key,) = list_objects(client, s3_bucket)
    assert first_key.endswith("/a/x.json")
    second = run(config, [Recorder(s3_bucket)])
    assert second.ok, second.failures
    assert list(list_objects(client, s3_bucket)) == [first_key]  # nothing sent
    assert (new / where).read_bytes() == b"payload"  # out of reach: left alone
    assert _claims(spool_dir) == []  # forgotten
    (new / where).rename(new / "c.json")  # back within reach
    third = run(config, [Recorder(s3_bucket)])
    assert third.ok, third.failures
    objects = list_objects(client, s3_bucket)
    (second_key,) = set(objects) - {first_key}  # a key of its own: a second object
    assert second_key.endswith("/c.json")
    assert get_body(client, s3_bucket, first_key) == get_body(client, s3_bucket, second_key)
    assert files_below(spool_dir / "completed") == {"c.json": b"payload"}
    assert files_below(new) == {}


def test_file_moved_and_changed_mid_upload_ships_its_new_bytes_under_a_new_key(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, s3_env: None
) -> None:
    """Moved from ``a/`` to ``b/`` and appended to during its PUT: not the file that was
    uploaded, so the next run does not adopt the claim; it ships the final bytes under a key
    of its own. Two objects, the first with the bytes as they were, nothing lost."""
    new = spool_dir / "new"
    tree(new, {"a/x.json": b"payload"})
    (new / "b").mkdir()
    config = nested_config(seaweed, s3_bucket, spool_dir, "{uuid4}/{relpath}")

    def move_and_append() -> None:
        (new / "a" / "x.json").rename(new / "b" / "x.json")
        with open(new / "b" / "x.json", "ab") as fh:
            fh.write(b"+more")

    recorder = Recorder(s3_bucket)
    assert not run_hooked(config, [mutate_during("PutObject", move_and_append)], recorder).ok
    assert [f.kind for f in recorder.failed()] == ["changed"]
    second = run(config, [Recorder(s3_bucket)])
    assert second.ok, second.failures
    client = seaweed.client()
    bodies = {key.split("/", 1)[1]: get_body(client, s3_bucket, key)
              for key in list_objects(client, s3_bucket)}  # fmt: skip
    assert bodies == {"a/x.json": b"payload", "b/x.json": b"payload+more"}
    assert files_below(spool_dir / "completed") == {"b/x.json": b"payload+more"}
    assert _claims(spool_dir) == []


@pytest.mark.parametrize(("size", "objects"), [(100, 2), (6 << 20, 1)])
def test_sigkill_after_upload_then_the_producer_moves_the_file(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, size: int, objects: int
) -> None:
    """SIGKILL right after the upload, then the producer moves ``a/x.dat`` to ``b/``. A file
    at or above ``--multipart-threshold`` was marked uploaded: the rerun finds it by its inode
    and only moves it (one object). A smaller one was not (that costs a transaction per
    file): its claim is dropped with its name and the rerun uploads it again under a key of
    its own (two objects, same bytes). Either way it lands once in ``completed/``."""
    data = os.urandom(size)
    tree(spool_dir / "new", {"a/x.dat": data})
    (spool_dir / "new" / "b").mkdir()
    args = ["--recursive", "--format", "{uuid4}/{relpath}", "--multipart-threshold", "5MiB",
            "--part-size", "5MiB"]  # fmt: skip
    env = {**seaweed.env(), "SPOOL_TOOL_TESTING": "1", "SPOOL_TOOL_CRASH_AT": "after_upload"}
    crashed = run_cli(*args, spool_dir, f"s3://{s3_bucket}", env=env)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    (spool_dir / "new" / "a" / "x.dat").rename(spool_dir / "new" / "b" / "x.dat")
    rerun = run_cli(*args, spool_dir, f"s3://{s3_bucket}", env=seaweed.env())
    assert rerun.returncode == 0, rerun.stderr
    client = seaweed.client()
    keys = list_objects(client, s3_bucket)
    assert len(keys) == objects, sorted(keys)
    assert sorted(k.split("/", 1)[1] for k in keys) == ["a/x.dat", "b/x.dat"][:objects]
    assert all(get_body(client, s3_bucket, key) == data for key in keys)
    assert files_below(spool_dir / "completed") == {"b/x.dat": data}
    assert files_below(spool_dir / "new") == {}
    assert _claims(spool_dir) == []
    assert open_multipart_uploads(client, s3_bucket) == []


def _claims(spool: Path) -> list[bytes]:
    db = sqlite3.connect(spool / ".spool_tool" / "journal.sqlite3")
    try:
        return [row[0] for row in db.execute("SELECT name FROM claims")]
    finally:
        db.close()


def test_journal_names_are_relative_paths_and_flat_names_unchanged(
    spool_dir: Path,
) -> None:
    tree(spool_dir / "new", {"flat.json": b"1", "a/b.json": b"2"})
    result = run_cli("--recursive", "--no-cleanup", spool_dir, "noop")
    assert result.returncode == 0, result.stderr
    db = sqlite3.connect(spool_dir / ".spool_tool" / "journal.sqlite3")
    try:
        names = sorted(row[0] for row in db.execute("SELECT name FROM ledger"))
    finally:
        db.close()
    assert names == [b"a/b.json", b"flat.json"]


CRASHES = [("after_claim", 0), ("after_upload", 3), ("after_link", 2), ("after_move", 4)]


@pytest.mark.parametrize(("point", "skip"), CRASHES)
def test_sigkill_mid_run_of_a_nested_spool_then_rerun_ships_each_file_once(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, point: str, skip: int
) -> None:
    contents = {f"d{i % 3}/s{i % 2}/f{i:02d}.dat": os.urandom(200) for i in range(12)}
    contents |= {"top.dat": os.urandom(50)}
    tree(spool_dir / "new", contents)
    args = ["--recursive", "--format", "{uuid4}/{relpath}", "--concurrency", "2"]
    env = {**seaweed.env(), "SPOOL_TOOL_TESTING": "1", "SPOOL_TOOL_CRASH_AT": point,
           "SPOOL_TOOL_CRASH_SKIP": str(skip)}  # fmt: skip
    crashed = run_cli(*args, spool_dir, f"s3://{s3_bucket}", env=env)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    rerun = run_cli(*args, spool_dir, f"s3://{s3_bucket}", env=seaweed.env())
    assert rerun.returncode == 0, rerun.stderr
    client = seaweed.client()
    objects = list_objects(client, s3_bucket)
    by_relpath = {key.split("/", 1)[1]: get_body(client, s3_bucket, key) for key in objects}
    assert len(objects) == len(contents), sorted(objects)
    assert by_relpath == contents
    assert files_below(spool_dir / "completed") == contents
    assert files_below(spool_dir / "new") == {}
    assert open_multipart_uploads(client, s3_bucket) == []


def test_cleanup_and_prune_of_a_nested_spool_end_to_end(spool_dir: Path) -> None:
    tree(spool_dir / "new", TREE)
    old = time.time() - 3600
    for rel in ("2026/12/01/host-a", "2026/12/01/host-b", "2026/12/01", "2026/12/02", "2026/12",
                "2026"):  # fmt: skip
        os.utime(spool_dir / "new" / rel, (old, old))
    result = run_cli("--recursive", "--delete-after", "0", "--prune-empty-dirs", spool_dir, "noop")
    assert result.returncode == 0, result.stderr
    # Cleanup deleted every completed file and the mirror directories it emptied.
    assert list((spool_dir / "completed").iterdir()) == []
    # The moves just emptied the directories of new/ (their mtime is now): the hold is 0.
    assert list((spool_dir / "new").iterdir()) == []
    tree(spool_dir / "new", {"q/r.json": b"r"})
    held = run_cli("--recursive", "--hold-for", "10", "--prune-empty-dirs", "--no-cleanup",
                   spool_dir, "noop")  # fmt: skip
    assert held.returncode == 0, held.stderr
    assert (spool_dir / "new" / "q" / "r.json").exists()  # held, and its directory stays


def test_status_counts_the_tree(spool_dir: Path) -> None:
    tree(spool_dir / "new", TREE)
    flat = run_cli("--status", "--log-format", "json", spool_dir)
    nested = run_cli("--status", "--recursive", "--log-format", "json", spool_dir)
    assert '"files_waiting": 1' in flat.stdout, flat.stdout
    assert f'"files_waiting": {len(TREE)}' in nested.stdout, nested.stdout


# -- --watch -----------------------------------------------------------------------------------


def test_watch_picks_up_a_file_in_a_new_subdirectory_at_once(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path
) -> None:
    daemon = Daemon(
        "--recursive", "--interval", "60", "--format", "{relpath}", str(spool_dir),
        f"s3://{s3_bucket}", env={**os.environ, **seaweed.env()},
    )  # fmt: skip
    try:
        client = seaweed.client()
        _wait(lambda: bool(daemon.matching("watching")), 20)
        time.sleep(1.5)  # the start-up line comes before the first cycle and the watches
        started = time.monotonic()
        deep = spool_dir / "new" / "x" / "y"
        deep.mkdir(parents=True)  # watched as it appears, then its own subdirectory
        tmp = spool_dir / "incoming.tmp"
        tmp.write_bytes(b"nested")
        tmp.rename(deep / "z.json")
        _wait(lambda: "x/y/z.json" in list_objects(client, s3_bucket), 15)
        assert time.monotonic() - started < 15  # far below the 60 s rescan interval
        code = daemon.stop(signal.SIGTERM, timeout=30)
    finally:
        daemon.close()
    assert code == 0, daemon.stderr
    assert (spool_dir / "completed" / "x" / "y" / "z.json").read_bytes() == b"nested"


def test_watch_of_a_subdirectory_ends_when_it_is_moved_away_and_follows_it_back_in(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, tmp_path: Path
) -> None:
    """Writes in a directory moved out of ``new/`` start no cycle (the metrics textfile,
    written once per cycle, shows every cycle); moved back in under another name, and then
    moved within ``new/``, it is watched at its new path: its new files ship at once."""
    (spool_dir / "new" / "a").mkdir()
    textfile = tmp_path / "spool_tool.prom"
    daemon = Daemon(
        "--recursive", "--interval", "60", "--format", "{relpath}", "--metrics-file",
        str(textfile), str(spool_dir), f"s3://{s3_bucket}", env={**os.environ, **seaweed.env()},
    )  # fmt: skip
    client = seaweed.client()

    def last_cycle() -> str:
        return _last_cycle(textfile)

    def drop(relpath: str, data: bytes) -> None:
        _drop(spool_dir, relpath, data)

    try:
        _wait(lambda: bool(last_cycle()), 20)  # the first cycle is over
        away = spool_dir / "away"
        (spool_dir / "new" / "a").rename(away)
        time.sleep(0.5)
        before = last_cycle()
        for i in range(5):
            (away / f"f{i}.json").write_bytes(b"away")
            time.sleep(0.2)
        time.sleep(1.0)
        assert last_cycle() == before  # no cycle for writes outside new/
        started = time.monotonic()
        away.rename(spool_dir / "new" / "b")  # back in, under another name
        moved_in = {f"b/f{i}.json" for i in range(5)}
        _wait(lambda: moved_in <= set(list_objects(client, s3_bucket)), 15)
        drop("b/late.json", b"late")
        _wait(lambda: "b/late.json" in list_objects(client, s3_bucket), 15)
        (spool_dir / "new" / "b").rename(spool_dir / "new" / "c")  # within new/
        time.sleep(0.5)
        (spool_dir / "new" / "c" / "d").mkdir()
        time.sleep(0.5)
        drop("c/d/x.json", b"x")
        _wait(lambda: "c/d/x.json" in list_objects(client, s3_bucket), 15)
        assert time.monotonic() - started < 30  # far below the 60 s rescan interval
        code = daemon.stop(signal.SIGTERM, timeout=30)
    finally:
        daemon.close()
    assert code == 0, daemon.stderr
    assert "Traceback" not in daemon.stderr
    assert (spool_dir / "completed" / "c" / "d" / "x.json").read_bytes() == b"x"


def test_watch_limit_warns_once_and_the_rescan_ships_files_in_unwatched_directories(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, tmp_path: Path
) -> None:
    """The installed command under a watch limit of 2 (``new/`` and ``a/``): a directory made
    later gets no watch, one warning says so, and its files ship by the rescan within about
    ``--interval``; a watched directory still ships at once."""
    (spool_dir / "new" / "a").mkdir()
    textfile = tmp_path / "spool_tool.prom"
    interval = 4.0
    env = {**os.environ, **seaweed.env(), "SPOOL_TOOL_TESTING": "1",
           "SPOOL_TOOL_TEST_MAX_WATCHES": "2"}  # fmt: skip
    daemon = Daemon(
        "--recursive", "--interval", f"{interval:g}", "--format", "{relpath}",
        "--metrics-file", str(textfile), str(spool_dir), f"s3://{s3_bucket}", env=env,
    )  # fmt: skip
    client = seaweed.client()
    try:
        _wait(lambda: bool(_last_cycle(textfile)), 20)  # the first cycle is over
        before = _last_cycle(textfile)
        (spool_dir / "new" / "late" / "deep").mkdir(parents=True)  # over the limit
        (spool_dir / "new" / "late2").mkdir()  # no second warning
        _wait(lambda: _last_cycle(textfile) != before, 10)  # new/ saw them: a cycle
        _wait_quiet(textfile, 0.5)
        written = time.monotonic()
        _drop(spool_dir, "late/x.json", b"x")
        _drop(spool_dir, "late/deep/y.json", b"y")
        time.sleep(1.0)
        assert "late/x.json" not in list_objects(client, s3_bucket)  # no notification
        wanted = {"late/x.json", "late/deep/y.json"}
        _wait(lambda: wanted <= set(list_objects(client, s3_bucket)), interval + 10)
        assert time.monotonic() - written < interval + 3  # by the periodic rescan
        started = time.monotonic()
        _drop(spool_dir, "a/z.json", b"z")  # watched
        _wait(lambda: "a/z.json" in list_objects(client, s3_bucket), 10)
        assert time.monotonic() - started < interval
        code = daemon.stop(signal.SIGTERM, timeout=30)
    finally:
        daemon.close()
    assert code == 0, daemon.stderr
    assert "Traceback" not in daemon.stderr
    assert "SPOOL_TOOL_TEST_MAX_WATCHES" not in daemon.stderr  # a test seam, not an option
    warnings = daemon.matching("inotify watch limit reached")
    assert len(warnings) == 1, daemon.stderr
    assert "fs.inotify.max_user_watches" in warnings[0]
    assert "rescanned every --interval" in warnings[0]
    assert files_below(spool_dir / "completed") == {
        "late/x.json": b"x", "late/deep/y.json": b"y", "a/z.json": b"z"
    }  # fmt: skip


def _last_cycle(textfile: Path) -> str:
    """The end of the daemon's last cycle, from its metrics textfile (written every cycle)."""
    text = textfile.read_text() if textfile.exists() else ""
    lines = [ln for ln in text.splitlines() if ln.startswith("spool_tool_last_run_")]
    return lines[0] if lines else ""


def _wait_quiet(textfile: Path, seconds: float) -> None:
    """Until no cycle ended for ``seconds``."""
    last = _last_cycle(textfile)
    while True:
        time.sleep(seconds)
        now = _last_cycle(textfile)
        if now == last:
            return
        last = now


def _drop(spool_dir: Path, relpath: str, data: bytes) -> None:
    """Put a file into ``new/relpath`` as a producer does: write it aside, then rename it."""
    tmp = spool_dir / "incoming.tmp"
    tmp.write_bytes(data)
    tmp.rename(spool_dir / "new" / relpath)


def _wait(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    pytest.fail("timed out")


def test_notifier_watches_new_subdirectories_and_warns_once_at_the_watch_limit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    new = tmp_path / "new"
    for rel in ("a", "b", "c/d"):
        (new / rel).mkdir(parents=True)

    async def scenario() -> tuple[bool, bool, bool]:
        notifier = Notifier([(new, RECURSIVE)], max_watches=5)  # new/, a, b, c, c/d
        try:
            limited = notifier.limited
            (new / "fresh").mkdir()  # over the limit: not watched, one warning
            await asyncio.wait_for(notifier.changed.wait(), 5)  # new/ saw it appear
            (new / "fresh2").mkdir()  # no second warning
            await asyncio.sleep(0.2)
            limited = notifier.limited and not limited
            notifier.changed.clear()
            (new / "fresh" / "f.json").write_bytes(b"x")
            fresh_seen = await _changed_within(notifier, 0.5)
            (new / "a" / "g.json").write_bytes(b"x")
            watched_seen = await _changed_within(notifier, 5)
            return limited, fresh_seen, watched_seen
        finally:
            notifier.close()

    with caplog.at_level(logging.WARNING, logger="spool_tool.watch"):
        limited, fresh_seen, watched_seen = asyncio.run(scenario())
    assert limited
    warnings = [r.getMessage() for r in caplog.records if "watch limit" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "fs.inotify.max_user_watches" in warnings[0]
    assert "rescanned every --interval" in warnings[0]
    assert not fresh_seen  # left to the periodic rescan
    assert watched_seen


def test_notifier_follows_directories_as_they_appear(tmp_path: Path) -> None:
    new = tmp_path / "new"
    new.mkdir()

    async def scenario() -> bool:
        notifier = Notifier([(new, RECURSIVE)])
        try:
            (new / "p").mkdir()
            await asyncio.wait_for(notifier.changed.wait(), 5)
            await asyncio.sleep(0.1)  # the watch on p/ is added as its event is read
            (new / "p" / "q").mkdir()
            await asyncio.sleep(0.2)
            notifier.changed.clear()
            (new / "p" / "q" / "r.json").write_bytes(b"r")
            return await _changed_within(notifier, 5)
        finally:
            notifier.close()

    assert asyncio.run(scenario())


async def _changed_within(notifier: Notifier, seconds: float) -> bool:
    try:
        await asyncio.wait_for(notifier.changed.wait(), seconds)
    except TimeoutError:
        return False
    return True


def test_notifier_drops_the_watches_of_a_directory_moved_away_and_follows_one_moved_within(
    tmp_path: Path,
) -> None:
    """A subdirectory moved out of ``new/`` loses its watches (later writes there wake nothing
    and cost no watch); moved back in, or within ``new/``, it is watched at its new path,
    and so is a directory created below it afterwards; a deleted one is forgotten."""
    new = tmp_path / "new"
    for rel in ("a/s", "b"):
        (new / rel).mkdir(parents=True)
    away = tmp_path / "away"

    async def scenario() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        notifier = Notifier([(new, RECURSIVE)])
        try:
            seen["start"] = notifier.watched
            (new / "a").rename(away)
            await asyncio.sleep(0.2)
            seen["moved_away"] = notifier.watched
            notifier.changed.clear()
            (away / "f.json").write_bytes(b"f")
            (away / "s" / "g.json").write_bytes(b"g")
            seen["woke_away"] = await _changed_within(notifier, 0.5)
            away.rename(new / "b" / "a2")  # moved back in, elsewhere
            seen["woke_back"] = await _changed_within(notifier, 5)
            await asyncio.sleep(0.2)
            seen["moved_back"] = notifier.watched
            (new / "b").rename(new / "c")  # moved within new/
            await asyncio.sleep(0.2)
            seen["moved_within"] = notifier.watched
            (new / "c" / "a2" / "s" / "t").mkdir()  # found under its new path
            await asyncio.sleep(0.2)
            seen["created_below"] = notifier.watched
            notifier.changed.clear()
            (new / "c" / "a2" / "s" / "t" / "h.json").write_bytes(b"h")
            seen["woke_below"] = await _changed_within(notifier, 5)
            (new / "c" / "a2" / "s" / "t" / "h.json").unlink()
            (new / "c" / "a2" / "s" / "t").rmdir()
            await asyncio.sleep(0.2)
            seen["deleted"] = notifier.watched
        finally:
            notifier.close()
        return seen

    seen = asyncio.run(scenario())
    assert seen["start"] == {new, new / "a", new / "a" / "s", new / "b"}
    assert seen["moved_away"] == {new, new / "b"}
    assert not seen["woke_away"]
    assert seen["woke_back"]
    assert seen["moved_back"] == {new, new / "b", new / "b" / "a2", new / "b" / "a2" / "s"}
    c = new / "c"
    assert seen["moved_within"] == {new, c, c / "a2", c / "a2" / "s"}
    assert seen["created_below"] == {new, c, c / "a2", c / "a2" / "s", c / "a2" / "s" / "t"}
    assert seen["woke_below"]
    assert seen["deleted"] == {new, c, c / "a2", c / "a2" / "s"}


def test_notifier_drops_a_directory_moved_beyond_max_depth_or_into_an_excluded_one(
    tmp_path: Path,
) -> None:
    new = tmp_path / "new"
    for rel in ("a", "b", "tmp"):
        (new / rel).mkdir(parents=True)
    options = ScanOptions(max_depth=2, path_filter=PathFilter(excludes=("tmp/",)))

    async def scenario() -> tuple[set[Path], set[Path], bool]:
        notifier = Notifier([(new, options)])
        try:
            start = notifier.watched
            (new / "a").rename(new / "b" / "a")  # now at depth 2: beyond --max-depth 2
            await asyncio.sleep(0.2)
            notifier.changed.clear()
            (new / "b" / "a" / "f.json").write_bytes(b"f")
            woke = await _changed_within(notifier, 0.5)
            (new / "b").rename(new / "tmp" / "b")  # into an excluded directory
            await asyncio.sleep(0.2)
            return start, notifier.watched, woke
        finally:
            notifier.close()

    start, after, woke = asyncio.run(scenario())
    assert start == {new, new / "a", new / "b"}
    assert after == {new}
    assert not woke
