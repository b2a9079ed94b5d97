"""FAULT-MATRIX rows 16-18, 20, 21, 28, 30 and 32: the spool's filesystem misbehaving.

Changes "during the upload" are made by a botocore ``before-send`` hook on the real S3 client
(``tests.faults.runs.mutate_during``): the request body has been read from the open descriptor,
the request is about to go out, and the file in ``new/`` is deleted, truncated, rewritten,
renamed over or swapped for a symlink. The job runs in-process against SeaweedFS.

Rows needing privileges use real ones: ``setpriv`` to drop root for the unreadable file (root
ignores ``chmod 000``) and ``unshare -m`` to mount a 128 KiB tmpfs for disk-full. They are marked
``root`` and skip with the reason when the tool or the privilege is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from spool_tool.events import FileMoved
from spool_tool.journal import Journal
from spool_tool.run import run
from tests.conftest import TINY_TMPFS
from tests.faults.runs import (
    MiB,
    Recorder,
    assert_retry_ok,
    big_file,
    make_config,
    mutate_during,
    run_hooked,
)
from tests.helpers import (
    SPOOL_TOOL,
    damage_table,
    get_body,
    list_objects,
    open_multipart_uploads,
    permissions_enforced,
    run_cli,
)

if TYPE_CHECKING:
    from devtools.seaweed import SeaweedServer


def claims_of(spool: Path) -> dict[str, str]:
    journal = Journal.read_only(spool)
    if journal is None:
        return {}
    try:
        return {name: claim.key for name, claim in journal.claims.items()}
    finally:
        journal.close()


def completed_names(spool: Path) -> list[str]:
    completed = spool / "completed"
    return sorted(p.name for p in completed.iterdir()) if completed.exists() else []


# ------------------------------------------------------------------------------- rows 16-18

ORIGINAL = b"original bytes, as read for the upload\n" * 40


def change_during_upload(
    seaweed: SeaweedServer,
    bucket: str,
    spool: Path,
    change: Callable[[Path], None],
    *,
    data: bytes = ORIGINAL,
    multipart: bool = False,
) -> tuple[Recorder, Path]:
    """Ship one file while ``change`` hits it mid-upload; check the common promises: the run
    reports the file (no crash), nothing reaches completed/, no multipart upload is left."""
    path = spool / "new" / "data.bin"
    path.write_bytes(data)
    old = time.time() - 600  # a rewrite "now" is sure to change mtime_ns
    os.utime(path, (old, old))
    # Multipart: right after CreateMultipartUpload, before any part is read (parts of one
    # window are read in parallel, so a change at the first UploadPart would race them).
    operation = "CreateMultipartUpload" if multipart else "PutObject"
    recorder = Recorder(bucket)
    # boto3 engine: the hook sees only boto3's requests (single PUTs may go through obstore)
    config = make_config(spool, bucket, seaweed.endpoint_url, multipart=multipart, engine="boto3")

    summary = run_hooked(config, [mutate_during(operation, lambda: change(path))], recorder)

    assert not summary.ok
    (failure,) = recorder.failed()
    assert failure.path == path
    assert "internal error" not in failure.message
    assert completed_names(spool) == []
    assert not any(isinstance(e, FileMoved) for e in recorder.events)
    assert open_multipart_uploads(seaweed.client(), bucket) == []
    return recorder, path


def test_file_deleted_during_upload_is_not_a_crash_and_not_completed(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, s3_env: None
) -> None:
    """Row 17: unlinked mid-upload -> reported, nothing in completed/, the rerun forgets it."""
    recorder, path = change_during_upload(seaweed, s3_bucket, spool_dir, os.unlink)
    assert "changed while uploading" in recorder.failed()[0].message
    assert not path.exists()
    rerun = run(make_config(spool_dir, s3_bucket, seaweed.endpoint_url), [Recorder(s3_bucket)])
    assert rerun.ok, rerun.failures
    assert completed_names(spool_dir) == []
    assert claims_of(spool_dir) == {}  # the stale claim was dropped


def test_file_swapped_for_symlink_during_upload_is_never_moved_or_followed(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, tmp_path: Path, s3_env: None
) -> None:
    """Row 18: the name now points elsewhere (a symlink to a secret): it is not moved as
    completed, never followed, and the secret is never uploaded, on this run or the next."""
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"do not upload me")

    def swap(path: Path) -> None:
        path.unlink()
        path.symlink_to(secret)

    recorder, path = change_during_upload(seaweed, s3_bucket, spool_dir, swap)
    assert "changed while uploading" in recorder.failed()[0].message
    rerun = run(make_config(spool_dir, s3_bucket, seaweed.endpoint_url), [Recorder(s3_bucket)])
    assert rerun.ok, rerun.failures
    assert path.is_symlink()
    assert os.readlink(path) == str(secret)
    assert secret.read_bytes() == b"do not upload me"
    assert completed_names(spool_dir) == []
    client = seaweed.client()
    bodies = [get_body(client, s3_bucket, key) for key in list_objects(client, s3_bucket)]
    assert bodies == [ORIGINAL]  # the old inode's bytes, read before the swap; no secret


def test_file_renamed_over_during_upload_ships_the_new_file_as_itself(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, s3_env: None
) -> None:
    """Row 18: a writer renames a new file over the name mid-upload. The uploaded (old) inode is
    not moved as completed; the next run ships the new inode under a fresh key and moves it."""
    replacement = b"the producer's replacement\n"

    def rename_over(path: Path) -> None:
        tmp = path.parent.parent / "incoming.tmp"  # same filesystem, outside new/
        tmp.write_bytes(replacement)
        os.replace(tmp, path)

    recorder, path = change_during_upload(seaweed, s3_bucket, spool_dir, rename_over)
    old_key = recorder.keys()["data.bin"]
    assert path.read_bytes() == replacement
    second = Recorder(s3_bucket)
    rerun = run(make_config(spool_dir, s3_bucket, seaweed.endpoint_url), [second])
    assert rerun.ok, rerun.failures
    new_key = second.keys()["data.bin"]
    assert new_key != old_key  # another inode: another claim
    assert (spool_dir / "completed" / "data.bin").read_bytes() == replacement
    client = seaweed.client()
    assert get_body(client, s3_bucket, new_key) == replacement
    assert get_body(client, s3_bucket, old_key) == ORIGINAL


def truncate(path: Path) -> None:
    os.truncate(path, 10)


def rewrite_same_size(path: Path) -> None:
    with path.open("r+b") as fh:
        fh.write(ORIGINAL.upper())


@pytest.mark.parametrize(
    ("change", "final"),
    [(truncate, ORIGINAL[:10]), (rewrite_same_size, ORIGINAL.upper())],
    ids=["truncate", "rewrite-same-size"],
)
def test_file_truncated_or_rewritten_during_upload_rerun_ships_final_bytes_to_same_key(
    seaweed: SeaweedServer,
    s3_bucket: str,
    spool_dir: Path,
    s3_env: None,
    change: Callable[[Path], None],
    final: bytes,
) -> None:
    """Row 16 (append is in test_crash_safety): the change is detected, the file is not moved;
    the rerun uploads the final bytes to the same key: one object."""
    recorder, path = change_during_upload(seaweed, s3_bucket, spool_dir, change)
    assert recorder.failed()[0].kind == "changed"
    assert path.read_bytes() == final
    rerun = run(make_config(spool_dir, s3_bucket, seaweed.endpoint_url), [recorder])
    assert rerun.ok, rerun.failures
    assert_retry_ok(seaweed.client(), s3_bucket, spool_dir, {"data.bin": final}, recorder.keys())


def test_file_truncated_during_multipart_upload_aborts_it(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, s3_env: None
) -> None:
    """Row 16, multipart: the file shrinks after the upload started (UploadId journaled) ->
    the upload is aborted (no open upload, no object), the file stays; the rerun ships the
    final bytes to the same key."""
    data = os.urandom(11 * MiB)
    recorder, path = change_during_upload(
        seaweed, s3_bucket, spool_dir, lambda p: os.truncate(p, 2 * MiB), data=data, multipart=True
    )
    assert path.stat().st_size == 2 * MiB
    assert list_objects(seaweed.client(), s3_bucket) == {}
    config = make_config(spool_dir, s3_bucket, seaweed.endpoint_url, multipart=True)
    rerun = run(config, [recorder])
    assert rerun.ok, rerun.failures
    assert_retry_ok(
        seaweed.client(), s3_bucket, spool_dir, {"data.bin": data[: 2 * MiB]}, recorder.keys()
    )


# ------------------------------------------------------------------------------- row 20


def test_hard_link_to_a_file_outside_is_uploaded_and_the_outside_name_kept(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, tmp_path: Path, s3_env: None
) -> None:
    """Row 20, the implemented policy (pipeline.SpoolUploader._ship): a regular file with
    st_nlink > 1 is shipped like any other file (its bytes are uploaded, no refusal); the move
    is link + unlink of the new/ name only, so the other name and its content are untouched."""
    outside = tmp_path / "elsewhere" / "sensitive.conf"
    outside.parent.mkdir()
    outside.write_bytes(b"password=hunter2\n")
    os.link(outside, spool_dir / "new" / "innocent.log")
    recorder = Recorder(s3_bucket)

    summary = run(make_config(spool_dir, s3_bucket, seaweed.endpoint_url), [recorder])

    assert summary.ok, summary.failures
    key = recorder.keys()["innocent.log"]
    assert get_body(seaweed.client(), s3_bucket, key) == b"password=hunter2\n"
    assert completed_names(spool_dir) == ["innocent.log"]
    assert outside.read_bytes() == b"password=hunter2\n"
    assert outside.stat().st_nlink == 2  # outside + completed/innocent.log; new/ name gone
    assert list((spool_dir / "new").iterdir()) == []


def test_hard_link_already_in_completed_is_treated_as_an_interrupted_move(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, s3_env: None
) -> None:
    """Row 20, the other half of the policy: when new/NAME is the same inode as
    completed/NAME (what a crash between link and unlink leaves), the new/ name is removed
    without uploading again. A producer that hard-links an already-completed file back into
    new/ under the same name therefore gets no new upload."""
    completed = spool_dir / "completed"
    completed.mkdir()
    (completed / "again.csv").write_bytes(b"a,b\n")
    os.link(completed / "again.csv", spool_dir / "new" / "again.csv")

    summary = run(make_config(spool_dir, s3_bucket, seaweed.endpoint_url), [Recorder(s3_bucket)])

    assert summary.ok, summary.failures
    assert list((spool_dir / "new").iterdir()) == []
    assert (completed / "again.csv").read_bytes() == b"a,b\n"
    assert (completed / "again.csv").stat().st_nlink == 1
    assert list_objects(seaweed.client(), s3_bucket) == {}


# ------------------------------------------------------------------------------- row 21


@pytest.mark.root
def test_unreadable_file_stays_others_ship_exit_1(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path
) -> None:
    """Row 21: chmod 000 with root's permission bypass dropped (``permissions_enforced``: root
    would read it anyway; it keeps uid 0, so this works from a checkout only root can read)."""
    prefix = permissions_enforced()
    new = spool_dir / "new"
    readable = {f"ok{i}.txt": f"readable {i}\n".encode() for i in range(3)}
    for name, data in readable.items():
        (new / name).write_bytes(data)
    locked = new / "locked.txt"
    locked.write_bytes(b"no one may read this\n")
    locked.chmod(0)
    before = locked.stat()

    result = run_cli(
        spool_dir,
        f"s3://{s3_bucket}",
        env={**seaweed.env(), "PYTHONDONTWRITEBYTECODE": "1"},
        prefix=prefix,
        timeout=60,
    )

    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, result.stderr
    assert str(locked) in errors[0]
    assert "Permission denied" in errors[0]
    after = locked.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns, stat.S_IMODE(after.st_mode)) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
        0,
    )
    assert completed_names(spool_dir) == sorted(readable)
    client = seaweed.client()
    assert list_objects(client, s3_bucket) == {name: len(d) for name, d in readable.items()}


@pytest.mark.root
@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
def test_unreadable_new_is_one_line_and_the_other_spools_ship(
    tmp_path: Path, *, dry_run: bool
) -> None:
    """Issue 9.1: a spool whose new/ cannot be read is one ERROR line naming the directory
    and the cause; the spools after it on the command line are processed; exit 1."""
    prefix = permissions_enforced()
    spools = [tmp_path / name for name in ("first", "locked", "last")]
    for spool in spools:
        (spool / "new").mkdir(parents=True)
        (spool / "new" / f"{spool.name}.txt").write_bytes(spool.name.encode())
    locked_new = spools[1] / "new"
    locked_new.chmod(0)
    try:
        result = run_cli(
            *(["--dry-run"] if dry_run else []), *spools, "noop", prefix=prefix, timeout=60
        )
    finally:
        locked_new.chmod(0o755)

    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, result.stderr
    assert errors[0].endswith(f" ERROR {locked_new}: cannot read the directory: Permission denied")
    for spool in (spools[0], spools[2]):
        if dry_run:
            assert f"would upload {spool / 'new' / spool.name}.txt" in result.stdout
        else:
            assert completed_names(spool) == [f"{spool.name}.txt"]
    assert (locked_new / "locked.txt").exists()


@pytest.mark.root
def test_unreadable_completed_is_one_line_at_cleanup(spool_dir: Path) -> None:
    """Issue 9.1, cleanup phase: completed/ that cannot be read is reported, not a traceback."""
    prefix = permissions_enforced()
    completed = spool_dir / "completed"
    completed.mkdir()
    (completed / "old.txt").write_bytes(b"old")
    completed.chmod(0)
    try:
        result = run_cli("--delete-after", "0", spool_dir, "noop", prefix=prefix, timeout=60)
    finally:
        completed.chmod(0o755)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert errors == [errors[0]], result.stderr
    assert errors[0].endswith(f"{completed}: cannot read the directory: Permission denied")
    assert (completed / "old.txt").exists()


# ------------------------------------------------------------------------------- row 28


@pytest.fixture
def other_fs_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory on another filesystem than tmp_path (/dev/shm is a tmpfs here)."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("/dev/shm is missing or on the same filesystem as the test's tmp_path")
    path = Path(tempfile.mkdtemp(prefix="spool_tool-completed-", dir=shm))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_completed_on_another_filesystem_copies_then_removes_the_source(
    spool_dir: Path, other_fs_dir: Path
) -> None:
    """Row 28: completed/ is a symlink to a tmpfs directory (EXDEV): every file arrives intact,
    the source is gone, no temporary copy is left, the symlink itself is kept."""
    new = spool_dir / "new"
    contents = {f"f{i}.dat": os.urandom(1000 + i) for i in range(5)}
    contents["big.dat"] = os.urandom(3 * MiB + 1)
    for name, data in contents.items():
        (new / name).write_bytes(data)
    (spool_dir / "completed").symlink_to(other_fs_dir)

    result = run_cli(spool_dir, "noop", timeout=60)

    assert result.returncode == 0, result.stderr
    assert (spool_dir / "completed").is_symlink()
    assert list(new.iterdir()) == []
    assert sorted(os.listdir(other_fs_dir)) == sorted(contents)  # nothing else, no partial
    for name, data in contents.items():
        assert (other_fs_dir / name).read_bytes() == data


# ------------------------------------------------------------------------------- row 30


# Runs "$@" in a new mount namespace with a 128 KiB tmpfs on $MNT (prepared by $PREPARE, then
# filled up if $FILL is set); leaves the tmpfs's listing in $LISTING; exits with "$@"'s status.
TMPFS_SCRIPT = r"""
set -e
mount -t tmpfs -o "$TMPFS_OPTS" tmpfs "$MNT"
if [ -n "$PREPARE" ]; then sh -c "$PREPARE"; fi
if [ -n "$FILL" ]; then dd if=/dev/zero of="$MNT/filler" bs=1024 2>/dev/null || true; fi
set +e
"$@"
rc=$?
ls -A "$MNT" > "$LISTING"
exit $rc
"""


def run_on_tiny_tmpfs(
    mountpoint: Path,
    args: list[str],
    *,
    env: dict[str, str] | None = None,
    fill: bool = False,
    prepare: str = "",
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run the CLI with ``mountpoint`` on a 128 KiB tmpfs; returns (result, tmpfs listing)."""
    listing = mountpoint.parent / f".{mountpoint.name}.listing"
    result = subprocess.run(
        ["unshare", "-m", "--", "sh", "-c", TMPFS_SCRIPT, "sh", *SPOOL_TOOL, *args],
        env={
            **os.environ,
            **(env or {}),
            "MNT": str(mountpoint),
            "TMPFS_OPTS": TINY_TMPFS,
            "PREPARE": prepare,
            "FILL": "1" if fill else "",
            "LISTING": str(listing),
            "PYTHONDONTWRITEBYTECODE": "1",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    left = listing.read_text().split() if listing.exists() else []
    listing.unlink(missing_ok=True)
    return result, left


def enospc_moving(spool: Path) -> tuple[subprocess.CompletedProcess[str], list[str], bytes]:
    """completed/ is a 128 KiB tmpfs (so the move copies); big.bin (200 KB) cannot fit and is
    the oldest, small.txt (3 bytes) could."""
    new = spool / "new"
    big = big_file(new / "big.bin", 200_000)
    (new / "small.txt").write_bytes(b"hi\n")
    (spool / "completed").mkdir()
    result, left = run_on_tiny_tmpfs(
        spool / "completed", ["--concurrency", "1", str(spool), "noop"]
    )
    return result, left, big


@pytest.mark.root
def test_disk_full_while_moving_keeps_the_source(spool_dir: Path, mount_namespace: None) -> None:
    """Row 30: ENOSPC while copying into completed/: the source stays intact, non-zero exit,
    one error line naming the file and the cause."""
    result, _, big = enospc_moving(spool_dir)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    big_errors = [ln for ln in result.stderr.splitlines() if " ERROR " in ln and "big.bin" in ln]
    assert len(big_errors) == 1, result.stderr
    assert "No space left on device" in big_errors[0]
    assert (spool_dir / "new" / "big.bin").read_bytes() == big


@pytest.mark.root
def test_disk_full_while_moving_leaves_no_partial_copy(
    spool_dir: Path, mount_namespace: None
) -> None:
    """Row 28/30: "never both copies lost, never both kept silently" -- and no partial."""
    result, left, _ = enospc_moving(spool_dir)
    assert [name for name in left if name.endswith(".spool_tool-partial")] == [], left
    assert "small.txt" in left, result.stderr  # it fits once the failed copy is cleaned up


@pytest.mark.root
def test_disk_full_state_dir_on_first_run_uploads_nothing(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, mount_namespace: None
) -> None:
    """Row 30: the state directory is full before the journal exists: the spool fails with one
    line, exit 1, no object, no file moved."""
    (spool_dir / ".spool_tool").mkdir()
    (spool_dir / "new" / "a.txt").write_bytes(b"a")
    result, _ = run_on_tiny_tmpfs(
        spool_dir / ".spool_tool",
        [str(spool_dir), f"s3://{s3_bucket}"],
        env=seaweed.env(),
        fill=True,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, result.stderr
    assert "journal" in errors[0]
    assert "full" in errors[0]
    assert str(spool_dir) in errors[0]
    assert (spool_dir / "new" / "a.txt").read_bytes() == b"a"
    assert list_objects(seaweed.client(), s3_bucket) == {}


PREPARE_JOURNAL = (
    f"{sys.executable} -c 'import sys, pathlib; from spool_tool.journal import Journal; "
    "Journal.open(pathlib.Path(sys.argv[1])).close()' "
)


def enospc_existing_journal(
    spool: Path, destination: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The journal exists (an earlier run), then its filesystem fills up; 300 files wait."""
    (spool / ".spool_tool").mkdir()
    for i in range(300):
        (spool / "new" / f"f{i:03d}.txt").write_bytes(b"x")
    result, _ = run_on_tiny_tmpfs(
        spool / ".spool_tool",
        [str(spool), destination],
        env=env,
        fill=True,
        prepare=PREPARE_JOURNAL + str(spool),
    )
    return result


@pytest.mark.root
def test_disk_full_state_dir_with_existing_journal_uploads_nothing(
    seaweed: SeaweedServer, s3_bucket: str, spool_dir: Path, mount_namespace: None
) -> None:
    """Row 30: claims cannot be committed -> nothing is uploaded (a key must be journaled
    before any byte is sent), nothing moved, non-zero exit."""
    result = enospc_existing_journal(spool_dir, f"s3://{s3_bucket}", seaweed.env())
    assert result.returncode != 0, result.stderr
    assert len(list((spool_dir / "new").iterdir())) == 300
    assert completed_names(spool_dir) == []
    assert list_objects(seaweed.client(), s3_bucket) == {}


@pytest.mark.root
def test_disk_full_state_dir_with_existing_journal_is_one_error_line(
    spool_dir: Path, mount_namespace: None
) -> None:
    """Row 30: the failed claim commit stops the run with one line, not a traceback (fixed in
    2fd00c0; before it, sqlite3.OperationalError escaped SpoolUploader.run)."""
    result = enospc_existing_journal(spool_dir, "noop")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, result.stderr


# ------------------------------------------------------------------------------- row 32


def test_future_mtime_policy(spool_dir: Path) -> None:
    """Row 32, the implemented policy (scan.is_old_enough / iter_eligible): a file dated more
    than 2 s ahead is warned about on every run; without --hold-for it is shipped, with a
    --hold-for it waits until its mtime is old enough (never silently)."""
    new = spool_dir / "new"
    future = new / "from-the-future.dat"
    future.write_bytes(b"tomorrow")
    tomorrow = time.time() + 86400
    os.utime(future, (tomorrow, tomorrow))
    (new / "normal.dat").write_bytes(b"today")
    os.utime(new / "normal.dat", (time.time() - 600, time.time() - 600))

    held = run_cli("--hold-for", "5", spool_dir, "noop", timeout=30)
    assert held.returncode == 0, held.stderr
    warnings = [ln for ln in held.stderr.splitlines() if " WARNING " in ln]
    assert len(warnings) == 1, held.stderr
    assert str(future) in warnings[0]
    assert warnings[0].endswith(
        f"{future}: modification time is in the future (check the clock); "
        "waiting until it is old enough"
    )
    assert future.exists()
    assert completed_names(spool_dir) == ["normal.dat"]

    shipped = run_cli(spool_dir, "noop", timeout=30)
    assert shipped.returncode == 0, shipped.stderr
    # Issue 9.7: the words say what happens (it is uploaded), not "skipped".
    (warning,) = [ln for ln in shipped.stderr.splitlines() if " WARNING " in ln]
    assert warning.endswith(
        f"WARNING {future}: modification time is in the future (check the clock); "
        "uploading it anyway"
    )
    assert "skipped" not in warning
    assert completed_names(spool_dir) == ["from-the-future.dat", "normal.dat"]
    assert (spool_dir / "completed" / "from-the-future.dat").read_bytes() == b"tomorrow"


# ------------------------------------------------------------------------------- issue 9.8


def test_relative_spool_dir_works_like_an_absolute_one(tmp_path: Path) -> None:
    """Issue 9.8: a run, then a dry run, --status and a cleanup, all with a relative SPOOL_DIR
    whose journal exists (the dry run used to end in "relative path can't be expressed as a
    file URI")."""
    (tmp_path / "sp" / "new").mkdir(parents=True)
    (tmp_path / "sp" / "new" / "one.txt").write_bytes(b"1")
    first = run_cli("sp", "noop", cwd=tmp_path, timeout=60)
    assert first.returncode == 0, first.stderr
    (tmp_path / "sp" / "new" / "two.txt").write_bytes(b"2")

    for args in (
        ["--dry-run", "sp", "noop"],
        ["--status", "sp"],
        ["--dry-run", "--delete-after", "0", "sp", "noop"],
        ["--delete-after", "0", "sp", "noop"],
    ):
        result = run_cli(*args, cwd=tmp_path, timeout=60)
        assert result.returncode == 0, (args, result.stderr)
        assert "Traceback" not in result.stderr, args
    assert completed_names(tmp_path / "sp") == []
    assert not (tmp_path / "sp" / "new" / "two.txt").exists()


# ------------------------------------------------------------------------------- issue 9.2

# 10001-01-01T00:00:00Z: tmpfs, btrfs and xfs store it; Python's datetime stops at 9999.
YEAR_10001 = 253_402_300_800 + 366 * 86400


@pytest.fixture
def far_time_dir() -> Iterator[Path]:
    """A directory on a filesystem that keeps an mtime in the year 10001 (ext4 clamps at 2446):
    /dev/shm, a tmpfs."""
    shm = Path("/dev/shm")
    if not shm.is_dir():
        pytest.skip("/dev/shm is missing: no filesystem here stores an mtime past 9999")
    path = Path(tempfile.mkdtemp(prefix="spool_tool-far-time-", dir=shm))
    probe = path / "probe"
    probe.touch()
    os.utime(probe, (YEAR_10001, YEAR_10001))
    if probe.stat().st_mtime != YEAR_10001:
        shutil.rmtree(path)
        pytest.skip("/dev/shm does not store an mtime in the year 10001")
    probe.unlink()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize(
    "template", ["{fname}", "{m_YYYY}/{m_MM}/{fname}"], ids=["plain", "time-tokens"]
)
def test_mtime_past_year_9999_stops_only_that_file(far_time_dir: Path, template: str) -> None:
    """Issue 9.2: one file dated in the year 10001 used to stop the whole run ("cannot claim
    files: year 10001 is out of range"). With time tokens it is reported (one ERROR line, left
    in new/) and the others ship; without them it ships like any file with a future mtime.
    A file dated before 1970 ships under its own date. --status shows ages for both."""
    spool = far_time_dir / "spool"
    new = spool / "new"
    new.mkdir(parents=True)
    for name, stamp in (("far.txt", YEAR_10001), ("old.txt", -2_000_000_000), ("now.txt", None)):
        (new / name).write_bytes(name.encode())
        if stamp is not None:
            os.utime(new / name, (stamp, stamp))

    status = run_cli("--status", "--log-format", "json", spool, timeout=60)
    assert status.returncode == 0, status.stderr
    (backlog,) = json.loads(status.stdout)["spools"]
    assert backlog["files_waiting"] == 3
    assert backlog["oldest_age_seconds"] > 2_000_000_000 + time.time() - 60

    result = run_cli("--format", template, spool, "noop", timeout=60)
    assert "Traceback" not in result.stderr
    assert "stopping" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    if template == "{fname}":
        assert result.returncode == 0, result.stderr
        assert completed_names(spool) == ["far.txt", "now.txt", "old.txt"]
        return
    assert result.returncode == 1, result.stderr
    assert len(errors) == 1, result.stderr
    assert f"{new / 'far.txt'}: modification time {YEAR_10001} " in errors[0]
    assert "outside the years 1-9999" in errors[0]
    assert completed_names(spool) == ["now.txt", "old.txt"]
    assert "noop://1906/08/old.txt" in result.stderr
    assert (new / "far.txt").exists()


# ------------------------------------------------------------------------------- issue 9.5


def test_damaged_journal_is_one_line_with_the_way_out_and_moving_it_aside_recovers(
    spool_dir: Path,
) -> None:
    """Issue 9.5: a damaged page in the ledger used to end in a traceback after files were
    moved. Now: one ERROR line naming the journal and what to do, exit 1, nothing lost (the
    files are in completed/); after moving the journal aside, as the line says, runs are clean."""
    new = spool_dir / "new"
    for i in range(300):
        (new / f"first-{i:03d}-with-a-long-name.txt").write_bytes(b"1")
    assert run_cli(spool_dir, "noop", timeout=60).returncode == 0
    damage_table(spool_dir, "ledger")
    for i in range(3):
        (new / f"second-{i}.txt").write_bytes(b"2")

    result = run_cli(spool_dir, "noop", timeout=60)

    journal = spool_dir / ".spool_tool" / "journal.sqlite3"
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, result.stderr
    assert f"{journal}: the journal is damaged (database disk image is malformed)" in errors[0]
    assert f"mv {journal} {journal}.damaged" in errors[0]
    assert list(new.iterdir()) == []
    assert len(completed_names(spool_dir)) == 303

    journal.rename(f"{journal}.damaged")
    (new / "third.txt").write_bytes(b"3")
    again = run_cli("--delete-after", "0", spool_dir, "noop", timeout=60)
    assert again.returncode == 0, again.stderr
    assert completed_names(spool_dir) == []


@pytest.mark.parametrize("in_the_way", ["file", "dangling symlink"])
def test_completed_that_is_not_a_directory_is_one_line_and_the_other_spools_ship(
    tmp_path: Path, in_the_way: str
) -> None:
    """A file (or a symlink to nowhere) where completed/ should be used to end in a
    FileExistsError traceback from its mkdir. Now: one ERROR line naming it, nothing of that
    spool claimed or moved, the spools after it shipped, exit 1."""
    spools = [tmp_path / name for name in ("bad", "good")]
    for spool in spools:
        (spool / "new").mkdir(parents=True)
        (spool / "new" / f"{spool.name}.txt").write_bytes(b"x")
    completed = spools[0] / "completed"
    if in_the_way == "file":
        completed.write_bytes(b"not a directory")
    else:
        completed.symlink_to(tmp_path / "nowhere")

    result = run_cli(*spools, "noop", timeout=60)

    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, result.stderr
    assert errors[0].endswith(f" ERROR {completed}: cannot use the directory: not a directory")
    assert (spools[0] / "new" / "bad.txt").exists()
    assert completed_names(spools[1]) == ["good.txt"]


def test_journal_that_cannot_be_opened_is_reported_once_per_run(spool_dir: Path) -> None:
    """A journal that is not a database (or cannot be opened) used to print its ERROR line
    twice, once for the upload phase and again for cleanup. Now once; nothing moves; exit 1."""
    (spool_dir / "new" / "a.txt").write_bytes(b"a")
    (spool_dir / "completed").mkdir()
    state = spool_dir / ".spool_tool"
    state.mkdir()
    (state / "journal.sqlite3").write_bytes(b"not sqlite at all" * 512)

    result = run_cli(spool_dir, "noop", timeout=60)

    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, result.stderr
    assert "the journal is damaged (file is not a database)" in errors[0]
    assert (spool_dir / "new" / "a.txt").exists()
