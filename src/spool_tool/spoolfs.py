"""Every filesystem operation on a spool: safe opens, no-clobber moves, scoped deletes.

Every destructive act (mkdir, move, delete) goes through ``SpoolFS``, which is also the single
gate that implements ``--dry-run``.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from spool_tool.crashpoints import crash_point
from spool_tool.display import display_name
from spool_tool.errors import FileError

NEW = "new"
COMPLETED = "completed"
STATE_DIR = ".spool_tool"
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_MAX_RENAME_TRIES = 1000


def entry_kind(mode: int) -> str:
    """What a non-regular entry is, for messages ("symlink", "FIFO"...)."""
    for test, kind in (
        (stat.S_ISLNK, "symlink"),
        (stat.S_ISDIR, "directory"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    ):
        if test(mode):
            return kind
    return "special file"


def iter_entries(directory: Path | int) -> Iterator[tuple[os.DirEntry[str], os.stat_result]]:
    """Every entry directly in ``directory`` (a path or an open descriptor) with its ``lstat``
    (never following symlinks), streamed. An entry that vanishes between ``readdir`` and
    ``lstat`` is left out. The directory is opened at once: ``OSError`` (permission denied...)
    is raised by the call itself, not at the first ``next``."""
    entries = os.scandir(directory)
    return _lstat_each(entries)


def _lstat_each(
    entries: os._ScandirIterator[str],  # typeshed's name for the result of scandir()
) -> Iterator[tuple[os.DirEntry[str], os.stat_result]]:
    with entries as opened:
        for entry in opened:
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # vanished between readdir and lstat
            yield entry, st


def regular_entries(
    directory: Path | int,
) -> Iterator[tuple[os.DirEntry[str], os.stat_result]]:
    """The regular files of ``iter_entries(directory)``: symlinks, directories, FIFOs and other
    special entries are never shipped, counted or deleted."""
    return ((entry, st) for entry, st in iter_entries(directory) if stat.S_ISREG(st.st_mode))


@dataclass(frozen=True, slots=True)
class Identity:
    """What must not change between claim and move for an upload to count."""

    dev: int
    ino: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> Identity:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass(slots=True)
class Source:
    """A source file opened for reading; ``fd`` is owned by whoever holds this."""

    path: Path
    fd: int
    st: os.stat_result
    on_sent: Callable[[int], None] | None = None  # told of each part that reached S3

    @property
    def size(self) -> int:
        return self.st.st_size

    def read_all(self) -> bytes:
        chunks: list[bytes] = []
        offset = 0
        while True:
            chunk = os.pread(self.fd, max(self.size - offset, 1 << 16), offset)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
        data = b"".join(chunks)
        if len(data) != self.size:
            raise FileError("size changed while reading", path=self.path)
        return data

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def open_source(path: Path) -> Source:
    """Open without following symlinks and without blocking on FIFOs; regular files only."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise FileError("is a symlink, not uploaded", path=path) from exc
        raise FileError("cannot open", path=path, cause=exc.strerror) from exc
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise FileError(f"not a regular file ({entry_kind(st.st_mode)})", path=path)
    return Source(path, fd, st)


def unchanged_since(source: Source) -> bool:
    """True when the open file and the name in ``new/`` are still the file we uploaded."""
    before = Identity.of(source.st)
    try:
        by_fd = Identity.of(os.fstat(source.fd))
        by_name = Identity.of(os.lstat(source.path))
    except FileNotFoundError:
        return False
    return before == by_fd == by_name


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_small(src: Path, dst: Path) -> None:
    """Copy a small file (a marker) to a new name across filesystems; never overwrites."""
    data = src.read_bytes()
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def _candidates(name: str) -> Iterator[str]:
    """``name``, then ``stem~1.ext``, ``stem~2.ext``... (lazily: almost always only the first)."""
    yield name
    stem, dot, ext = name.rpartition(".")
    if not stem:  # no extension, or a dotfile
        stem, dot, ext = name, "", ""
    for n in range(1, _MAX_RENAME_TRIES):
        yield f"{stem}~{n}{dot}{ext}"


def find_moved(completed: Path, name: str, dev: int, ino: int) -> Path | None:
    """Where ``move_to_completed`` linked the file (``dev``, ``ino``) named ``name``: the first
    of the names it tries (``name``, ``stem~1.ext``...) that is the same inode; None when none
    is (up to the first free name: a move takes the first free one). Finds only linked moves:
    a copy across filesystems is another inode."""
    for candidate in itertools.islice(_candidates(name), 50):
        try:
            other = os.lstat(completed / candidate)
        except FileNotFoundError:
            return None
        if (other.st_dev, other.st_ino) == (dev, ino):
            return completed / candidate
    return None


@dataclass(frozen=True)
class SpoolFS:
    """The one gate for changes on disk. With ``dry_run`` it changes nothing."""

    dry_run: bool = False

    def ensure_dir(self, path: Path) -> None:
        if not self.dry_run:
            path.mkdir(exist_ok=True)

    def move_to_completed(
        self, src: Path, completed: Path, marker_suffix: str | None = None
    ) -> Path:
        """Move ``src`` into ``completed`` without overwriting anything there.

        A clash gets a new name (``name~1.ext``). Uses ``link`` + ``unlink`` (atomic no-clobber);
        across filesystems it copies to a temporary name, fsyncs, links into place, then
        removes the source. A crash in between leaves the source in ``new/`` (and at worst a
        second link in ``completed/``, which ``finish_interrupted_move`` resolves).

        With ``marker_suffix`` (``--require-marker``) the marker ``src+SUFFIX`` follows the file
        to ``completed/<final name>+SUFFIX``, after the file is linked there and before the
        file leaves ``new/``: every crash state keeps the file in ``new/`` with a second link,
        which ``finish_interrupted_move`` completes, marker included.
        """
        if self.dry_run:
            return completed / src.name
        for name in _candidates(src.name):
            dst = completed / name
            try:
                os.link(src, dst, follow_symlinks=False)
            except FileExistsError:
                continue
            except OSError as exc:
                if exc.errno not in {errno.EXDEV, errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK}:
                    raise
                return self._copy_then_delete(src, completed, marker_suffix)
            crash_point("after_link")
            self._marker_follows(src, dst, marker_suffix)
            os.unlink(src)
            return dst
        raise FileError(f"too many files named like it in {display_name(completed)}", path=src)

    def _marker_follows(self, src: Path, dst: Path, suffix: str | None) -> None:
        """Move ``src``'s marker next to ``dst`` (no clobber), unless it is already there."""
        if suffix is None:
            return
        marker = Path(f"{src}{suffix}")
        try:
            st = os.lstat(marker)
        except FileNotFoundError:
            return  # a killed run moved it already
        if not stat.S_ISREG(st.st_mode):
            return
        for name in itertools.islice(_candidates(dst.name + suffix), 50):
            target = dst.parent / name
            try:
                os.link(marker, target, follow_symlinks=False)
            except FileExistsError:
                other = os.lstat(target)
                if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
                    break  # linked by a killed run
                continue
            except OSError as exc:
                if exc.errno not in {errno.EXDEV, errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK}:
                    raise
                _copy_small(marker, target)
            crash_point("after_marker_link")
            with contextlib.suppress(OSError):
                os.utime(target, follow_symlinks=False)  # retention counts from completion
            break
        os.unlink(marker)

    def _copy_then_delete(self, src: Path, completed: Path, marker_suffix: str | None) -> Path:
        tmp = completed / f".{src.name}.spool_tool-partial"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)  # a leftover of a crashed copy (unlink never follows a symlink)
        source = open_source(src)
        try:
            out_fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            with os.fdopen(source.fd, "rb", closefd=False) as fin, os.fdopen(out_fd, "wb") as fout:
                shutil.copyfileobj(fin, fout, 1 << 20)
                fout.flush()
                os.fsync(fout.fileno())
            os.utime(tmp, ns=(source.st.st_atime_ns, source.st.st_mtime_ns))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)  # e.g. ENOSPC: never leave a partial copy holding the space
            raise
        finally:
            source.close()
        try:
            for name in _candidates(src.name):
                dst = completed / name
                try:
                    os.link(tmp, dst)
                except FileExistsError:
                    continue
                fsync_dir(completed)
                self._marker_follows(src, dst, marker_suffix)
                os.unlink(src)
                return dst
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        raise FileError(f"too many files named like it in {display_name(completed)}", path=src)

    def finish_interrupted_move(
        self, src: Path, completed: Path, marker_suffix: str | None = None
    ) -> bool:
        """If a crash hit between ``link`` and ``unlink``, ``src`` is also linked in
        ``completed/``: move its marker along (``--require-marker``), remove the ``new/`` name
        and report True."""
        return self.finish_interrupted_move_to(src, completed, marker_suffix) is not None

    def finish_interrupted_move_to(
        self, src: Path, completed: Path, marker_suffix: str | None = None
    ) -> Path | None:
        """``finish_interrupted_move``, returning the file's path in ``completed/`` (None: no
        interrupted move)."""
        try:
            st = os.lstat(src)
        except FileNotFoundError:
            return None
        if st.st_nlink < 2:  # noqa: PLR2004 - "has another hard link"
            return None
        dst = find_moved(completed, src.name, st.st_dev, st.st_ino)
        if dst is not None and not self.dry_run:
            self._marker_follows(src, dst, marker_suffix)
            os.unlink(src)
        return dst

    def delete(self, directory_fd: int, name: str) -> None:
        """Unlink ``name`` relative to an open directory: never follows a path elsewhere."""
        if not self.dry_run:
            os.unlink(name, dir_fd=directory_fd)
