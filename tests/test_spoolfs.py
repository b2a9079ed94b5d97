"""Unit tests for ``spool_tool.spoolfs``: safe opens, change detection, no-clobber moves."""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from spool_tool.errors import FileError
from spool_tool.spoolfs import (
    Identity,
    Source,
    SpoolFS,
    open_source,
    unchanged_since,
)

pytestmark = pytest.mark.usefixtures("completed")


def put(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.fixture
def source(spool: Path) -> Iterator[Source]:
    src = open_source(put(spool / "new" / "data.bin", b"0123456789"))
    try:
        yield src
    finally:
        src.close()


def listing(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its content (None for directories and symlinks)."""
    out: dict[str, bytes | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            out[rel] = p.read_bytes() if p.is_file() and not p.is_symlink() else None
    return out


# -- open_source ------------------------------------------------------------------------------


def test_open_source_reads_a_regular_file(spool: Path) -> None:
    path = put(spool / "new" / "f", b"hello" * 30_000)
    src = open_source(path)
    try:
        assert src.size == 150_000
        assert src.read_all() == b"hello" * 30_000
        assert Identity.of(src.st) == Identity.of(os.lstat(path))
    finally:
        src.close()
    assert src.fd == -1
    src.close()  # idempotent


def test_open_source_refuses_symlink(spool: Path, tmp_path: Path) -> None:
    target = put(tmp_path / "secret", b"secret")
    os.symlink(target, spool / "new" / "link")
    with pytest.raises(FileError, match="symlink"):
        open_source(spool / "new" / "link")


def test_open_source_refuses_fifo_without_blocking(spool: Path) -> None:
    fifo = spool / "new" / "fifo"
    os.mkfifo(fifo)
    errors: list[BaseException] = []

    def attempt() -> None:
        try:
            open_source(fifo)
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(timeout=5)
    if worker.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # release the stuck reader
        pytest.fail("open_source blocked on a FIFO")
    assert len(errors) == 1
    assert isinstance(errors[0], FileError)
    assert "FIFO" in str(errors[0])


def test_open_source_refuses_directory(spool: Path) -> None:
    (spool / "new" / "d").mkdir()
    with pytest.raises(FileError, match="directory"):
        open_source(spool / "new" / "d")


def test_open_source_missing_file(spool: Path) -> None:
    with pytest.raises(FileError, match="cannot open"):
        open_source(spool / "new" / "missing")


def test_read_all_detects_truncation(source: Source) -> None:
    os.truncate(source.path, 3)
    with pytest.raises(FileError, match="size changed"):
        source.read_all()


def test_read_all_detects_growth(source: Source) -> None:
    with source.path.open("ab") as f:
        f.write(b"!")
    with pytest.raises(FileError, match="size changed"):
        source.read_all()


def test_read_all_of_an_empty_file(spool: Path) -> None:
    path = spool / "new" / "empty"
    path.touch()
    src = open_source(path)
    try:
        assert src.read_all() == b""
        path.write_bytes(b"x")
        with pytest.raises(FileError, match="size changed"):
            src.read_all()
    finally:
        src.close()


# -- unchanged_since --------------------------------------------------------------------------


def test_unchanged_file_is_unchanged(source: Source) -> None:
    assert source.read_all() == b"0123456789"
    assert unchanged_since(source)


def test_append_is_detected(source: Source) -> None:
    with source.path.open("ab") as f:
        f.write(b"more")
    assert not unchanged_since(source)


def test_truncate_is_detected(source: Source) -> None:
    os.truncate(source.path, 0)
    assert not unchanged_since(source)


def test_rewrite_same_size_is_detected_by_mtime(source: Source) -> None:
    with source.path.open("r+b") as f:
        f.write(b"X")
    st = source.st
    os.utime(source.path, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert os.lstat(source.path).st_size == st.st_size
    assert not unchanged_since(source)


def test_replace_by_rename_is_detected(source: Source, spool: Path) -> None:
    replacement = put(spool / "new" / ".tmp", b"0123456789")
    st = source.st
    os.utime(replacement, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and mtime
    os.rename(replacement, source.path)
    assert not unchanged_since(source)


def test_deletion_is_detected(source: Source) -> None:
    os.unlink(source.path)
    assert not unchanged_since(source)


# -- move_to_completed ------------------------------------------------------------------------


def test_move_keeps_content_and_removes_source(spool: Path) -> None:
    src = put(spool / "new" / "a.csv", b"payload")
    ino = os.lstat(src).st_ino
    dst = SpoolFS().move_to_completed(src, spool / "completed")
    assert dst == spool / "completed" / "a.csv"
    assert dst.read_bytes() == b"payload"
    assert os.lstat(dst).st_ino == ino
    assert os.lstat(dst).st_nlink == 1
    assert not src.exists()


@pytest.mark.parametrize(
    ("name", "clash"),
    [
        ("a.csv", "a~1.csv"),
        ("noext", "noext~1"),
        (".hidden", ".hidden~1"),
        ("x.tar.gz", "x.tar~1.gz"),
    ],
)
def test_move_never_overwrites(spool: Path, name: str, clash: str) -> None:
    completed = spool / "completed"
    put(completed / name, b"already there")
    src = put(spool / "new" / name, b"new content")
    dst = SpoolFS().move_to_completed(src, completed)
    assert dst == completed / clash
    assert (completed / name).read_bytes() == b"already there"
    assert dst.read_bytes() == b"new content"
    assert not src.exists()


def test_move_picks_the_next_free_name(spool: Path) -> None:
    completed = spool / "completed"
    put(completed / "a.csv", b"0")
    put(completed / "a~1.csv", b"1")
    os.symlink("/nonexistent", completed / "a~2.csv")  # a dangling symlink also blocks a name
    src = put(spool / "new" / "a.csv", b"3")
    dst = SpoolFS().move_to_completed(src, completed)
    assert dst == completed / "a~3.csv"
    assert [(completed / n).read_bytes() for n in ("a.csv", "a~1.csv", "a~3.csv")] == [
        b"0",
        b"1",
        b"3",
    ]
    assert os.readlink(completed / "a~2.csv") == "/nonexistent"


def test_dry_run_changes_nothing(spool: Path) -> None:
    src = put(spool / "new" / "a.csv", b"payload")
    put(spool / "completed" / "a.csv", b"old")
    os.link(src, spool / "completed" / "b.csv")
    before = listing(spool)
    fs = SpoolFS(dry_run=True)
    fs.ensure_dir(spool / "made")
    fs.move_to_completed(src, spool / "completed")
    assert fs.finish_interrupted_move(spool / "new" / "a.csv", spool / "completed") is False
    dir_fd = os.open(spool / "completed", os.O_RDONLY | os.O_DIRECTORY)
    try:
        fs.delete(dir_fd, "a.csv")
    finally:
        os.close(dir_fd)
    assert listing(spool) == before


def test_ensure_dir(spool: Path) -> None:
    fs = SpoolFS()
    fs.ensure_dir(spool / "completed")  # exists already: fine
    fs.ensure_dir(spool / "other")
    assert (spool / "other").is_dir()


def _exdev_once(monkeypatch: pytest.MonkeyPatch) -> list[tuple[object, object]]:
    calls: list[tuple[object, object]] = []
    real_link = os.link

    def fake_link(src: object, dst: object, *args: object, **kwargs: object) -> None:
        calls.append((src, dst))
        if len(calls) == 1:
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))
        real_link(src, dst, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "link", fake_link)
    return calls


def test_move_across_filesystems_copies_then_deletes(
    spool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(3 << 20)
    src = put(spool / "new" / "big.bin", data)
    os.utime(src, ns=(1_600_000_000 * 10**9, 1_600_000_000 * 10**9))
    completed = spool / "completed"
    put(completed / "big.bin", b"older")
    calls = _exdev_once(monkeypatch)
    dst = SpoolFS().move_to_completed(src, completed)
    assert len(calls) >= 2  # the copy path linked its temporary file into place
    assert dst == completed / "big~1.bin"
    assert dst.read_bytes() == data
    assert (completed / "big.bin").read_bytes() == b"older"
    assert os.lstat(dst).st_mtime_ns == 1_600_000_000 * 10**9
    assert not src.exists()
    assert sorted(os.listdir(completed)) == ["big.bin", "big~1.bin"]  # no partial left
    assert os.listdir(spool / "new") == []


@pytest.mark.parametrize("code", [errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK])
def test_move_falls_back_to_copy_when_links_are_refused(
    spool: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    src = put(spool / "new" / "f", b"abc")
    real_link = os.link
    calls: list[int] = []

    def fake_link(a: object, b: object, *args: object, **kwargs: object) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise OSError(code, os.strerror(code))
        real_link(a, b, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "link", fake_link)
    dst = SpoolFS().move_to_completed(src, spool / "completed")
    assert dst.read_bytes() == b"abc"
    assert not src.exists()
    assert os.listdir(spool / "completed") == ["f"]


def test_move_other_errors_propagate_and_leave_the_source(
    spool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = put(spool / "new" / "f", b"abc")

    def fake_link(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EACCES, "denied")

    monkeypatch.setattr(os, "link", fake_link)
    with pytest.raises(PermissionError):
        SpoolFS().move_to_completed(src, spool / "completed")
    assert src.read_bytes() == b"abc"
    assert os.listdir(spool / "completed") == []


def test_copy_path_failure_leaves_source_and_no_partial(
    spool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = put(spool / "new" / "f", b"abc")

    def fake_link(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EXDEV, "cross-device")  # the temp file cannot be linked either

    monkeypatch.setattr(os, "link", fake_link)
    with pytest.raises(OSError, match="cross-device"):
        SpoolFS().move_to_completed(src, spool / "completed")
    assert src.read_bytes() == b"abc"
    assert os.listdir(spool / "completed") == []


def test_copy_path_never_follows_a_symlink(
    spool: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = put(tmp_path / "secret", b"not for upload")
    link = spool / "new" / "data.csv"
    os.symlink(secret, link)
    _exdev_once(monkeypatch)
    with contextlib.suppress(FileError, OSError):
        SpoolFS().move_to_completed(link, spool / "completed")
    copied = [
        p.read_bytes()
        for p in (spool / "completed").iterdir()
        if p.is_file() and not p.is_symlink()
    ]
    assert b"not for upload" not in copied
    assert secret.read_bytes() == b"not for upload"


# -- finish_interrupted_move ------------------------------------------------------------------


def test_finish_interrupted_move_removes_the_new_name(spool: Path) -> None:
    src = put(spool / "new" / "a.csv", b"payload")
    os.link(src, spool / "completed" / "a.csv")  # crash between link and unlink
    assert SpoolFS().finish_interrupted_move(src, spool / "completed") is True
    assert not src.exists()
    assert (spool / "completed" / "a.csv").read_bytes() == b"payload"
    assert os.lstat(spool / "completed" / "a.csv").st_nlink == 1


def test_finish_interrupted_move_finds_a_renamed_link(spool: Path) -> None:
    put(spool / "completed" / "a.csv", b"someone else")
    src = put(spool / "new" / "a.csv", b"payload")
    os.link(src, spool / "completed" / "a~1.csv")
    assert SpoolFS().finish_interrupted_move(src, spool / "completed") is True
    assert not src.exists()
    assert (spool / "completed" / "a.csv").read_bytes() == b"someone else"
    assert (spool / "completed" / "a~1.csv").read_bytes() == b"payload"


def test_finish_interrupted_move_false_for_a_different_inode(spool: Path, tmp_path: Path) -> None:
    src = put(spool / "new" / "a.csv", b"payload")
    os.link(src, tmp_path / "producer_keeps_a_link")  # nlink 2, but not via completed/
    put(spool / "completed" / "a.csv", b"payload")  # same name and content, other inode
    assert SpoolFS().finish_interrupted_move(src, spool / "completed") is False
    assert src.read_bytes() == b"payload"
    assert (spool / "completed" / "a.csv").read_bytes() == b"payload"


def test_finish_interrupted_move_false_for_a_plain_file(spool: Path) -> None:
    src = put(spool / "new" / "a.csv", b"payload")
    assert SpoolFS().finish_interrupted_move(src, spool / "completed") is False
    assert SpoolFS().finish_interrupted_move(spool / "new" / "gone", spool / "completed") is False
    assert src.exists()


def test_finish_interrupted_move_dry_run_reports_but_keeps(spool: Path) -> None:
    src = put(spool / "new" / "a.csv", b"payload")
    os.link(src, spool / "completed" / "a.csv")
    assert SpoolFS(dry_run=True).finish_interrupted_move(src, spool / "completed") is True
    assert src.exists()


# -- delete -----------------------------------------------------------------------------------


def test_delete_is_relative_to_the_directory_fd(spool: Path, tmp_path: Path) -> None:
    completed = spool / "completed"
    put(completed / "old", b"x")
    outside = put(tmp_path / "old", b"keep")
    dir_fd = os.open(completed, os.O_RDONLY | os.O_DIRECTORY)
    try:
        SpoolFS().delete(dir_fd, "old")
    finally:
        os.close(dir_fd)
    assert not (completed / "old").exists()
    assert outside.read_bytes() == b"keep"
