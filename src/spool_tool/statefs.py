"""Where a spool's state (journal and lock) lives, and whether that place is safe for SQLite.

``state_dir_for`` derives one state directory per spool. Without ``--state-dir`` it is
``SPOOL_DIR/.spool_tool`` as always; with ``--state-dir ROOT`` it is ``ROOT/<tail>-<hash>``,
where ``<hash>`` is the first 16 hex digits of the SHA-256 of the spool's *real* path (symlinks
resolved) and ``<tail>`` a readable, sanitised end of that path. Two names of one spool (a
symlink and its target) therefore share one state directory, and so one lock; two different
spools never share one.

``check_state_dir`` refuses a state directory on a network or FUSE filesystem: SQLite's
documentation warns that its file locking is unreliable there (and WAL mode needs shared memory
that does not work across hosts), and ``flock`` may be emulated or ignored. The filesystem is
found from ``/proc/self/mountinfo`` (the mount with the longest mount point that is a path
prefix of the real path; the last one mounted wins on a tie), else from ``statfs(2)``'s
``f_type`` (Linux, via ctypes). When neither can tell (another OS), the directory is accepted.
Both sources are injectable: these machines cannot mount NFS, so tests pass mount table text.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from spool_tool.errors import ConfigError
from spool_tool.libc import libc
from spool_tool.spoolfs import COMPLETED, NEW, STATE_DIR

MOUNTINFO = "/proc/self/mountinfo"
HASH_DIGITS = 16  # 64 bits of SHA-256: no collision between the spools of one host
TAIL_CHARS = 48

Kind = Literal["local", "network", "fuse"]

# mountinfo file system types (field 9) of network and cluster filesystems. FUSE types are
# recognised by name ("fuse", "fuseblk", "fuse3", "fuse.SUBTYPE": sshfs, s3fs, gcsfuse, rclone,
# glusterfs, juicefs, mountpoint-s3...).
NETWORK_FSTYPES = frozenset(
    {
        "nfs", "nfs4", "cifs", "smb3", "smb2", "smbfs", "ncpfs", "ncp", "afs", "coda", "9p",
        "ceph", "glusterfs", "lustre", "gpfs", "gfs2", "ocfs2", "pvfs2", "orangefs", "beegfs",
        "davfs", "vboxsf", "vmhgfs", "virtiofs", "drvfs", "afpfs", "panfs", "wekafs",
    }
)  # fmt: skip
FUSE_FSTYPES = frozenset({"fuse", "fuseblk", "fuse3"})
# Mount table entries that do not say which filesystem holds the data: ask statfs instead.
_UNINFORMATIVE_FSTYPES = frozenset({"autofs"})

# statfs(2) f_type magic numbers (linux/magic.h, fs/*/): the fallback without a mount table.
STATFS_MAGIC: dict[int, tuple[str, Kind]] = {
    0x6969: ("nfs", "network"),
    0x517B: ("smbfs", "network"),
    0xFF534D42: ("cifs", "network"),
    0xFE534D42: ("smb2", "network"),
    0x65735546: ("fuse", "fuse"),
    0x01021997: ("9p", "network"),
    0x00C36400: ("ceph", "network"),
    0x73757245: ("coda", "network"),
    0x5346414F: ("afs", "network"),
    0x6B414653: ("afs", "network"),
    0x564C: ("ncpfs", "network"),
    0x0BD00BD0: ("lustre", "network"),
    0x47504653: ("gpfs", "network"),
    0x01161970: ("gfs2", "network"),
    0x7461636F: ("ocfs2", "network"),
    0x20030528: ("orangefs", "network"),
    0x786F4256: ("vboxsf", "network"),
}

_OCTAL_ESCAPE = re.compile(rb"\\([0-7]{3})")


def kind_of_fstype(fstype: str) -> Kind:
    if fstype in FUSE_FSTYPES or fstype.startswith("fuse."):
        return "fuse"
    if fstype in NETWORK_FSTYPES:
        return "network"
    return "local"


@dataclass(frozen=True, slots=True)
class Mount:
    mount_point: str
    fstype: str
    source: str


def _unescape(field: bytes) -> str:
    """The kernel writes space, tab, newline and backslash in mount points as ``\\ooo``."""
    return os.fsdecode(_OCTAL_ESCAPE.sub(lambda m: bytes([int(m[1], 8) & 0xFF]), field))


def _parse_line(line: bytes) -> Mount | None:
    """``ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER``."""
    fields = line.split(b" ")
    try:
        separator = fields.index(b"-", 6)
    except ValueError:
        return None
    fstype_and_source = fields[separator + 1 : separator + 3]
    if len(fstype_and_source) != 2:  # noqa: PLR2004 - both must follow the '-'
        return None
    fstype, source = fstype_and_source
    return Mount(_unescape(fields[4]), _unescape(fstype), _unescape(source))


def _is_within(path: str, mount_point: str) -> bool:
    if mount_point == "/":
        return path.startswith("/")
    return path == mount_point or path.startswith(mount_point.rstrip("/") + "/")


@dataclass(frozen=True, slots=True)
class MountTable:
    """The mounts of ``/proc/self/mountinfo`` (``proc(5)``), in mount order."""

    mounts: tuple[Mount, ...]

    @classmethod
    def parse(cls, text: str | bytes) -> MountTable:
        raw = os.fsencode(text) if isinstance(text, str) else text
        parsed = (_parse_line(line) for line in raw.splitlines())
        return cls(tuple(mount for mount in parsed if mount is not None))

    @classmethod
    def read(cls, path: str = MOUNTINFO) -> MountTable:
        """The live table; empty where there is none (not Linux, no ``/proc``)."""
        try:
            with open(path, "rb") as table:
                return cls.parse(table.read())
        except OSError:
            return cls(())

    def mount_of(self, real_path: str) -> Mount | None:
        """The mount holding ``real_path``: the longest mount point that is a path prefix of
        it; among equal mount points the last mounted (it hides the earlier ones)."""
        best: Mount | None = None
        for mount in self.mounts:
            if _is_within(real_path, mount.mount_point) and (
                best is None or len(mount.mount_point) >= len(best.mount_point)
            ):
                best = mount
        return best


@functools.cache
def _statfs_function() -> Callable[[bytes, ctypes.Array[ctypes.c_char]], int] | None:
    if not sys.platform.startswith("linux"):
        return None  # other systems lay out struct statfs differently (names, not numbers)
    lib = libc()
    if lib is None:
        return None
    function = getattr(lib, "statfs64", None) or getattr(lib, "statfs", None)
    if function is None:
        return None
    function.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    function.restype = ctypes.c_int
    return function  # type: ignore[no-any-return]


def statfs_magic(path: str) -> int | None:
    """``statfs(path).f_type`` on Linux (the first field of ``struct statfs``), else None."""
    function = _statfs_function()
    if function is None:
        return None
    buffer = ctypes.create_string_buffer(256)  # struct statfs is 120 bytes on 64-bit Linux
    if function(os.fsencode(path), buffer) != 0:
        return None
    word = ctypes.c_uint if platform.machine().startswith("s390") else ctypes.c_long
    return word.from_buffer(buffer).value & 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class FilesystemInfo:
    real_path: str
    fstype: str  # "nfs4", "fuse.sshfs", ...; "unknown" when neither source could tell
    kind: Kind
    mount_point: str | None = None  # None when found by statfs

    @property
    def is_shared(self) -> bool:
        """A network or FUSE filesystem: not a safe home for an SQLite journal."""
        return self.kind != "local"


def _existing_ancestor(path: str) -> str:
    while not os.path.exists(path) and path != os.path.dirname(path):
        path = os.path.dirname(path)
    return path


def filesystem_of(
    path: Path | str,
    *,
    mounts: MountTable | None = None,
    magic: Callable[[str], int | None] = statfs_magic,
) -> FilesystemInfo:
    """The filesystem that holds (or would hold, once created) ``path``.

    ``mounts`` defaults to the live ``/proc/self/mountinfo``; ``magic`` to ``statfs``."""
    real = os.path.realpath(path)  # resolves the existing part; may trigger an automount
    table = MountTable.read() if mounts is None else mounts
    mount = table.mount_of(real)
    if mount is not None and mount.fstype not in _UNINFORMATIVE_FSTYPES:
        return FilesystemInfo(real, mount.fstype, kind_of_fstype(mount.fstype), mount.mount_point)
    f_type = magic(_existing_ancestor(real))
    if f_type is None:
        return FilesystemInfo(real, "unknown", "local")
    name, kind = STATFS_MAGIC.get(f_type, (f"statfs type {f_type:#x}", "local"))
    return FilesystemInfo(real, name, kind)


def check_state_dir(
    state_dir: Path,
    *,
    allow_network: bool,
    mounts: MountTable | None = None,
    magic: Callable[[str], int | None] = statfs_magic,
) -> FilesystemInfo:
    """Refuse (``ConfigError``, one line) a state directory on a network or FUSE filesystem,
    unless ``--allow-network-state``; returns what was found (for a log line)."""
    found = filesystem_of(state_dir, mounts=mounts, magic=magic)
    if found.is_shared and not allow_network:
        where = f" at {found.mount_point}" if found.mount_point else ""
        raise ConfigError(
            f"{state_dir}: the journal would be on a {found.kind} filesystem ({found.fstype}"
            f"{where}), where SQLite locking is unreliable; put it on a local disk with "
            "--state-dir DIR, or pass --allow-network-state if only this host uses the spool"
        )
    return found


def _readable_tail(real_path: str) -> str:
    """``/srv/spools/app a`` -> ``srv_spools_app_a``: the end of the path, safe as a name."""
    flat = re.sub(r"[^A-Za-z0-9._-]", "_", real_path.strip("/"))
    return flat[-TAIL_CHARS:].lstrip("._-") or "root"


def state_dir_for(spool_dir: Path, state_root: Path | None) -> Path:
    """The directory holding ``spool_dir``'s journal and lock (see the module docstring)."""
    if state_root is None:
        return spool_dir / STATE_DIR
    real = os.path.realpath(spool_dir)
    digest = hashlib.sha256(os.fsencode(real)).hexdigest()[:HASH_DIGITS]
    return state_root / f"{_readable_tail(real)}-{digest}"


def check_state_root(state_root: Path, spool_dirs: Iterable[Path]) -> None:
    """Refuse a ``--state-dir`` inside a spool's ``new/`` or ``completed/``: its files would be
    uploaded, or deleted by cleanup."""
    root = os.path.realpath(state_root)
    for spool in spool_dirs:
        for part in (NEW, COMPLETED):
            inside = os.path.realpath(spool / part)
            if _is_within(root, inside):
                raise ConfigError(
                    f"is inside {spool / part}: choose a directory outside the spool's new/ "
                    "and completed/",
                    option="state_dir",
                    value=str(state_root),
                )
