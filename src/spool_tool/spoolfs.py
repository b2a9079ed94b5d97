"""Every filesystem operation on a spool: safe opens, no-clobber moves, scoped deletes.

Every destructive act (mkdir, move, delete) goes through ``SpoolFS``, which is also the single
gate that implements ``--dry-run``.

Nested spools (``--recursive``): ``walk`` lists a tree without following a symlink, opening
each subdirectory relative to its parent's descriptor with ``O_NOFOLLOW``; a file below
``new/`` is then reached the same way (``open_beneath``), and every operation on it is
relative to that descriptor (``At``). A directory swapped for a symlink at any moment can
therefore never lead a read, a link or an unlink outside the spool.
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
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_LINK_ERRNOS = frozenset({errno.EXDEV, errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK})
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


WalkError = Callable[[str, OSError], None]
"""Told of a subdirectory that could not be entered: (its path relative to the root, why)."""


def walk(
    directory: Path | int,
    *,
    max_depth: int | None = 1,
    skip_dir: Callable[[str], bool] | None = None,
    on_error: WalkError | None = None,
) -> Iterator[tuple[str, os.stat_result]]:
    """Every entry below ``directory`` as (path relative to it, ``/``-separated; its
    ``lstat``), streamed, the way ``iter_entries`` lists one directory.

    ``max_depth`` counts as ``find -maxdepth`` does: 1 lists ``directory`` alone (exactly
    ``iter_entries``), None has no limit. A subdirectory within the depth is entered (not
    yielded) unless ``skip_dir(relpath)``; deeper ones, skipped ones, symlinks and special
    files are yielded for the caller to report. A directory's entries come before those of its
    subdirectories, which are entered one at a time after it is listed (one descriptor per
    level is held), never following a symlink: each is opened relative to its parent with
    ``O_NOFOLLOW``, so one swapped for a symlink after it was listed is not entered
    (``on_error`` hears ``ENOTDIR``; a vanished one is left out silently). The root is opened
    at once: its ``OSError`` is raised by the call itself."""
    if max_depth == 1:
        return ((entry.name, st) for entry, st in iter_entries(directory))
    fd = os.dup(directory) if isinstance(directory, int) else os.open(directory, _DIR_FLAGS)
    return _walk(fd, max_depth, skip_dir, on_error)


def _walk(
    root_fd: int,
    max_depth: int | None,
    skip_dir: Callable[[str], bool] | None,
    on_error: WalkError | None,
) -> Iterator[tuple[str, os.stat_result]]:
    stack: list[tuple[int, str, list[str]]] = []  # (descriptor, relpath, subdirs to enter)
    fd: int | None = root_fd  # the directory being listed, owned here until it is stacked
    reldir, depth = "", 1
    try:
        while fd is not None:
            subdirs: list[str] = []
            for entry, st in iter_entries(fd):
                rel = f"{reldir}/{entry.name}" if reldir else entry.name
                deeper = max_depth is None or depth < max_depth
                if stat.S_ISDIR(st.st_mode) and deeper and not (skip_dir and skip_dir(rel)):
                    subdirs.append(entry.name)
                else:
                    yield rel, st
            subdirs.reverse()  # popped from the end: entered in directory order
            stack.append((fd, reldir, subdirs))
            fd = None
            child = _next_subdir(stack, on_error)
            if child is not None:
                fd, reldir = child
                depth = reldir.count("/") + 2
    finally:
        if fd is not None:
            os.close(fd)
        for open_fd, _, _ in stack:
            os.close(open_fd)


def _next_subdir(
    stack: list[tuple[int, str, list[str]]], on_error: WalkError | None
) -> tuple[int, str] | None:
    """Open the next subdirectory to list (closing the directories that have none left)."""
    while stack:
        parent, reldir, subdirs = stack[-1]
        if not subdirs:
            stack.pop()
            os.close(parent)
            continue
        name = subdirs.pop()
        rel = f"{reldir}/{name}" if reldir else name
        try:
            return os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=parent), rel
        except FileNotFoundError:
            continue  # vanished since it was listed
        except OSError as exc:  # ENOTDIR: swapped for a symlink or a file; EACCES...
            if on_error is not None:
                on_error(rel, exc)
    return None


def subdirectories(
    root: Path,
    *,
    max_depth: int | None,
    skip_dir: Callable[[str], bool] | None = None,
    start: str = "",
) -> list[tuple[str, float]]:
    """Every directory ``walk`` would enter below ``root/start``, as (path relative to
    ``root``, mtime), each after its parent. Listed by ``d_type`` (no ``lstat`` of the files:
    a huge directory costs a ``readdir``), each opened from ``root`` without following a
    symlink; one that cannot be opened is left out."""
    found: list[tuple[str, float]] = []
    pending = [start]
    while pending:
        reldir = pending.pop()
        depth = reldir.count("/") + 2 if reldir else 1  # the depth of the entries inside it
        if max_depth is not None and depth >= max_depth:
            continue  # its subdirectories are beyond the walk's reach
        try:
            fd = open_beneath(root, reldir)
        except OSError:
            continue
        try:
            with os.scandir(fd) as entries:
                for entry in entries:
                    rel = f"{reldir}/{entry.name}" if reldir else entry.name
                    if not entry.is_dir(follow_symlinks=False) or (skip_dir and skip_dir(rel)):
                        continue
                    try:
                        mtime = entry.stat(follow_symlinks=False).st_mtime
                    except FileNotFoundError:
                        continue
                    found.append((rel, mtime))
                    pending.append(rel)
        except OSError:
            continue
        finally:
            os.close(fd)
    return found


def open_beneath(root: Path | int, reldir: str, *, create: bool = False) -> int:
    """A descriptor of ``root/reldir``, each component opened relative to the one before with
    ``O_NOFOLLOW`` (``root``, a path or a descriptor, is taken as configured: it may be a
    symlink). With
    ``create`` missing components are made, and each parent fsynced at once, so that a file
    linked below them is durable once its own directory is. ``OSError`` otherwise
    (``ENOTDIR``: a component is a symlink or a file)."""
    fd = os.dup(root) if isinstance(root, int) else os.open(root, _DIR_FLAGS)
    try:
        for part in reldir.split("/") if reldir else ():
            if create:
                try:
                    os.mkdir(part, dir_fd=fd)
                except FileExistsError:
                    pass
                else:
                    os.fsync(fd)
            child = os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


@dataclass(frozen=True, slots=True)
class At:
    """A directory that names are looked up in: ``path`` (for messages; the lookup itself when
    ``fd`` is None), or the open descriptor ``fd`` of it (``open_beneath``), which every
    operation is then relative to, so that no symlink on the way to it is ever followed."""

    path: Path
    fd: int | None = None

    def ref(self, name: str) -> str:
        """``name`` as an argument for an ``os`` call that also gets ``dir_fd=self.fd`` (a
        string: ~0.25 us against ~1.7 us for a ``Path``, and a file's move takes several)."""
        return name if self.fd is not None else f"{self.path}/{name}"

    def lstat(self, name: str) -> os.stat_result:
        return os.stat(self.ref(name), dir_fd=self.fd, follow_symlinks=False)

    def unlink(self, name: str) -> None:
        os.unlink(self.ref(name), dir_fd=self.fd)

    def link(self, name: str, dst: At, dst_name: str) -> None:
        """Hard-link ``name`` as ``dst/dst_name`` (never follows a symlink, never replaces)."""
        os.link(
            self.ref(name),
            dst.ref(dst_name),
            src_dir_fd=self.fd,
            dst_dir_fd=dst.fd,
            follow_symlinks=False,
        )

    def open(self, name: str, flags: int, mode: int = 0o644) -> int:
        return os.open(self.ref(name), flags, mode, dir_fd=self.fd)

    def touch(self, name: str) -> None:
        """Set ``name``'s times to now (retention counts from completion)."""
        os.utime(self.ref(name), dir_fd=self.fd, follow_symlinks=False)

    def fsync(self) -> None:
        if self.fd is not None:
            os.fsync(self.fd)
        else:
            fsync_dir(self.path)


@contextlib.contextmanager
def dir_beneath(root: Path, reldir: str, *, create: bool = False) -> Iterator[At]:
    """``root`` itself (by path, as today) for ``reldir`` ``""``; else ``root/reldir`` opened
    by ``open_beneath`` for the duration of the block."""
    if not reldir:
        yield At(root)  # made (when needed) before the phase: no mkdir per file
        return
    fd = open_beneath(root, reldir, create=create)
    try:
        yield At(root / reldir, fd)
    finally:
        os.close(fd)


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
    at: At | None = None  # the directory it was opened in (``open_source(at=...)``)

    @property
    def size(self) -> int:
        return self.st.st_size

    def read_all(self) -> bytes:
        """The whole file; ``FileError`` if its size is not the one ``fstat`` gave. One
        ``pread`` asking a byte more than that (growth shows at once), read on only after a
        short answer (shrunk, or over the kernel's ~2 GiB per call)."""
        size = self.size
        data = os.pread(self.fd, size + 1, 0)
        if data and len(data) < size:
            chunks = [data]
            offset = len(data)
            while offset <= size and (chunk := os.pread(self.fd, size + 1 - offset, offset)):
                chunks.append(chunk)
                offset += len(chunk)
            data = b"".join(chunks)
        if len(data) != size:
            raise FileError("size changed while reading", path=self.path)
        return data

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def open_source(path: Path, at: At | None = None) -> Source:
    """Open without following symlinks and without blocking on FIFOs; regular files only.
    With ``at`` (the directory ``path`` is in), ``path.name`` is opened relative to it."""
    try:
        fd = os.open(path, _OPEN_FLAGS) if at is None else at.open(path.name, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise FileError("is a symlink, not uploaded", path=path) from exc
        raise FileError("cannot open", path=path, cause=exc.strerror) from exc
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise FileError(f"not a regular file ({entry_kind(st.st_mode)})", path=path)
    return Source(path, fd, st, at=at)


def unchanged_since(source: Source) -> bool:
    """True when the open file and the name in ``new/`` are still the file we uploaded."""
    return source_state(source) == "unchanged"


def source_state(source: Source) -> str:
    """``unchanged``: the open file and its name are still the file as opened; ``moved``: the
    open file is unchanged but its name is gone or names another file (the producer moved,
    deleted or replaced it); ``changed``: its bytes or times changed."""
    before = Identity.of(source.st)
    if Identity.of(os.fstat(source.fd)) != before:
        return "changed"
    try:
        if source.at is None:
            by_name = Identity.of(os.lstat(source.path))
        else:
            by_name = Identity.of(source.at.lstat(source.path.name))
    except (FileNotFoundError, NotADirectoryError):
        return "moved"
    if (by_name.dev, by_name.ino) != (before.dev, before.ino):
        return "moved"
    return "unchanged" if by_name == before else "changed"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_small(src: At, name: str, dst: At, dst_name: str) -> None:
    """Copy a small file (a marker) to a new name across filesystems; never overwrites."""
    in_fd = src.open(name, _OPEN_FLAGS)
    with os.fdopen(in_fd, "rb") as fin:
        data = fin.read()
    fd = dst.open(dst_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC)
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
    """Where ``move_to_completed`` linked the file (``dev``, ``ino``) whose path relative to
    ``new/`` is ``name`` (its mirror in ``completed``): the first of the names a move tries
    (``name``, ``stem~1.ext``...) that is the same inode; None when none is (up to the first
    free name: a move takes the first free one). Finds only linked moves: a copy across
    filesystems is another inode."""
    reldir, _, base = name.rpartition("/")
    return _find_linked(At(completed / reldir if reldir else completed), base, dev, ino)


def _find_linked(completed: At, name: str, dev: int, ino: int) -> Path | None:
    for candidate in itertools.islice(_candidates(name), 50):
        try:
            other = completed.lstat(candidate)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if (other.st_dev, other.st_ino) == (dev, ino):
            return completed.path / candidate
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
        """``move`` for a file named by its path (``src.parent`` and ``completed`` by path)."""
        return self.move(At(src.parent), src.name, At(completed), marker_suffix)

    def move(self, src: At, name: str, completed: At, marker_suffix: str | None = None) -> Path:
        """Move ``src/name`` into ``completed`` without overwriting anything there; returns
        its new path.

        A clash gets a new name (``name~1.ext``). Uses ``link`` + ``unlink`` (atomic no-clobber);
        across filesystems it copies to a temporary name, fsyncs, links into place, then
        removes the source. A crash in between leaves the source in ``new/`` (and at worst a
        second link in ``completed/``, which ``finish_interrupted_move`` resolves).

        With ``marker_suffix`` (``--require-marker``) the marker ``name+SUFFIX`` follows the
        file to ``completed/<final name>+SUFFIX``, after the file is linked there and before the
        file leaves ``new/``: every crash state keeps the file in ``new/`` with a second link,
        which ``finish_interrupted_move`` completes, marker included.
        """
        if self.dry_run:
            return completed.path / name
        for candidate in _candidates(name):
            try:
                src.link(name, completed, candidate)
            except FileExistsError:
                continue
            except OSError as exc:
                if exc.errno not in _LINK_ERRNOS:
                    raise
                return self._copy_then_delete(src, name, completed, marker_suffix)
            crash_point("after_link")
            self._marker_follows(src, name, completed, candidate, marker_suffix)
            src.unlink(name)
            return completed.path / candidate
        raise FileError(
            f"too many files named like it in {display_name(completed.path)}", path=src.path / name
        )

    def _marker_follows(
        self, src: At, name: str, completed: At, dst_name: str, suffix: str | None
    ) -> None:
        """Move ``name``'s marker next to ``dst_name`` (no clobber), unless it is already there."""
        if suffix is None:
            return
        marker = name + suffix
        try:
            st = src.lstat(marker)
        except FileNotFoundError:
            return  # a killed run moved it already
        if not stat.S_ISREG(st.st_mode):
            return
        for target in itertools.islice(_candidates(dst_name + suffix), 50):
            try:
                src.link(marker, completed, target)
            except FileExistsError:
                other = completed.lstat(target)
                if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
                    break  # linked by a killed run
                continue
            except OSError as exc:
                if exc.errno not in _LINK_ERRNOS:
                    raise
                _copy_small(src, marker, completed, target)
            crash_point("after_marker_link")
            with contextlib.suppress(OSError):
                completed.touch(target)  # retention counts from completion
            break
        src.unlink(marker)

    def _copy_then_delete(
        self, src: At, name: str, completed: At, marker_suffix: str | None
    ) -> Path:
        tmp = f".{name}.spool_tool-partial"
        with contextlib.suppress(FileNotFoundError):
            completed.unlink(tmp)  # a leftover of a crashed copy (unlink never follows a symlink)
        source = open_source(src.path / name, src)
        try:
            out_fd = completed.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW)
            with os.fdopen(source.fd, "rb", closefd=False) as fin, os.fdopen(out_fd, "wb") as fout:
                shutil.copyfileobj(fin, fout, 1 << 20)
                fout.flush()
                os.fsync(fout.fileno())
                os.utime(fout.fileno(), ns=(source.st.st_atime_ns, source.st.st_mtime_ns))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                completed.unlink(tmp)  # e.g. ENOSPC: never leave a partial copy holding the space
            raise
        finally:
            source.close()
        try:
            for candidate in _candidates(name):
                try:
                    completed.link(tmp, completed, candidate)
                except FileExistsError:
                    continue
                completed.fsync()
                self._marker_follows(src, name, completed, candidate, marker_suffix)
                src.unlink(name)
                return completed.path / candidate
        finally:
            with contextlib.suppress(FileNotFoundError):
                completed.unlink(tmp)
        raise FileError(
            f"too many files named like it in {display_name(completed.path)}", path=src.path / name
        )

    def finish_interrupted_move(
        self, src: Path, completed: Path, marker_suffix: str | None = None
    ) -> bool:
        """``finish_move`` for a file named by its path: True when it finished a move."""
        return self.finish_interrupted_move_to(src, completed, marker_suffix) is not None

    def finish_interrupted_move_to(
        self, src: Path, completed: Path, marker_suffix: str | None = None
    ) -> Path | None:
        """``finish_move`` for a file named by its path."""
        return self.finish_move(At(src.parent), src.name, At(completed), marker_suffix)

    def finish_move(
        self, src: At, name: str, completed: At, marker_suffix: str | None = None
    ) -> Path | None:
        """If a crash hit between ``link`` and ``unlink``, ``src/name`` is also linked in
        ``completed``: move its marker along (``--require-marker``), remove the ``new/`` name
        and return the file's path in ``completed`` (None: no interrupted move)."""
        try:
            st = src.lstat(name)
        except FileNotFoundError:
            return None
        if st.st_nlink < 2:  # noqa: PLR2004 - "has another hard link"
            return None
        dst = _find_linked(completed, name, st.st_dev, st.st_ino)
        if dst is not None and not self.dry_run:
            self._marker_follows(src, name, completed, dst.name, marker_suffix)
            src.unlink(name)
        return dst

    def delete(self, directory_fd: int, name: str) -> None:
        """Unlink ``name`` relative to an open directory: never follows a path elsewhere."""
        if not self.dry_run:
            os.unlink(name, dir_fd=directory_fd)

    def remove_dir(self, directory_fd: int, name: str) -> bool:
        """Remove the empty directory ``name`` relative to an open directory; False when it is
        not empty (a producer may just have created a file in it), gone or not a directory."""
        try:
            if self.dry_run:
                fd = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=directory_fd)
                try:
                    with os.scandir(fd) as entries:
                        return next(entries, None) is None  # what rmdir would say
                finally:
                    os.close(fd)
            os.rmdir(name, dir_fd=directory_fd)
        except OSError:
            return False
        return True

    def remove_dir_beneath(self, root: Path | int, reldir: str) -> bool:
        """``remove_dir`` of ``root/reldir``, its parent reached by ``open_beneath`` (never
        through a symlink); False also when that parent is gone or no longer a directory."""
        parent, _, name = reldir.rpartition("/")
        try:
            fd = open_beneath(root, parent)
        except OSError:
            return False
        try:
            return self.remove_dir(fd, name)
        finally:
            os.close(fd)
