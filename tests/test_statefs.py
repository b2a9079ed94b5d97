"""``spool_tool.statefs``: the state directory per spool and the network-filesystem check.

These machines cannot mount NFS: network filesystems come from injected mount table text
(the format of ``/proc/self/mountinfo``, ``proc(5)``) and injected ``statfs`` magic numbers.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spool_tool.errors import ConfigError
from spool_tool.statefs import (
    HASH_DIGITS,
    STATFS_MAGIC,
    Mount,
    MountTable,
    check_state_dir,
    check_state_root,
    filesystem_of,
    kind_of_fstype,
    state_dir_for,
    statfs_magic,
)

# A container's table: overlay root, an EFS volume (NFS 4.1), sshfs, s3fs, a CIFS share whose
# mount point has a space, a bind mount with optional fields, and a mount stacked on another.
MOUNTINFO = r"""22 1 0:21 / / rw,relatime master:1 - overlay overlay rw,lowerdir=/l,upperdir=/u
23 22 0:22 / /proc rw,relatime - proc proc rw
30 22 0:40 / /mnt/efs rw,relatime shared:7 - nfs4 fs-1234.efs.eu-west-1.amazonaws.com:/ rw,vers=4.1
31 22 0:41 / /mnt/efs-local rw,relatime - ext4 /dev/sdb1 rw
32 22 0:42 / /home/u/remote rw,nosuid,nodev - fuse.sshfs u@host:/data rw,user_id=0
33 22 0:43 / /mnt/bucket rw - fuse.s3fs s3fs rw
34 22 0:44 / /mnt/win\040share rw - cifs //srv/share rw,vers=3.0
35 22 8:1 /var/lib/spool /srv/spool rw master:2 propagate_from:1 - ext4 /dev/sda1 rw
36 22 0:45 / /srv/stack rw - ext4 /dev/sdc1 rw
37 22 0:46 / /srv/stack rw - nfs srv:/stack rw
38 30 0:47 / /mnt/efs/tmp rw - tmpfs tmpfs rw
39 22 0:48 / /mnt/auto rw - autofs systemd-1 rw
40 22 0:49 / /mnt/tab\011and\134slash rw - 9p hostshare rw
"""
TABLE = MountTable.parse(MOUNTINFO)


def no_statfs(path: str) -> int | None:
    return None


@pytest.mark.parametrize(
    ("path", "fstype", "kind", "mount_point"),
    [
        ("/var/spool/app", "overlay", "local", "/"),
        ("/mnt/efs/spool/.spool_tool", "nfs4", "network", "/mnt/efs"),
        ("/mnt/efs", "nfs4", "network", "/mnt/efs"),
        ("/mnt/efs-local/spool", "ext4", "local", "/mnt/efs-local"),  # not a prefix by name
        ("/mnt/efs/tmp/x", "tmpfs", "local", "/mnt/efs/tmp"),  # the longest prefix wins
        ("/home/u/remote/spool", "fuse.sshfs", "fuse", "/home/u/remote"),
        ("/mnt/bucket/a", "fuse.s3fs", "fuse", "/mnt/bucket"),
        ("/mnt/win share/spool", "cifs", "network", "/mnt/win share"),  # \040 decoded
        ("/mnt/win/spool", "overlay", "local", "/"),
        ("/srv/spool/x", "ext4", "local", "/srv/spool"),  # optional fields before '-'
        ("/srv/stack/x", "nfs", "network", "/srv/stack"),  # the last of stacked mounts
        ("/mnt/tab\tand\\slash/x", "9p", "network", "/mnt/tab\tand\\slash"),
    ],
)
def test_filesystem_from_the_mount_table(
    path: str, fstype: str, kind: str, mount_point: str
) -> None:
    found = filesystem_of(path, mounts=TABLE, magic=no_statfs)
    assert (found.fstype, found.kind, found.mount_point) == (fstype, kind, mount_point)
    assert found.is_shared is (kind != "local")


def test_mount_table_parsing_skips_malformed_lines_and_keeps_sources() -> None:
    table = MountTable.parse(b"garbage\n1 2 3 4\n" + MOUNTINFO.encode() + b"5 6 0:1 / /x rw -\n")
    assert len(table.mounts) == MOUNTINFO.count("\n")
    assert table.mounts[2] == Mount("/mnt/efs", "nfs4", "fs-1234.efs.eu-west-1.amazonaws.com:/")


def test_mount_points_with_undecodable_bytes_round_trip() -> None:
    table = MountTable.parse(b"1 1 0:1 / /mnt/\xff\\040x rw - nfs srv:/ rw\n")
    assert table.mounts[0].mount_point == os.fsdecode(b"/mnt/\xff x")
    found = filesystem_of(os.fsdecode(b"/mnt/\xff x/spool"), mounts=table, magic=no_statfs)
    assert found.fstype == "nfs"


def test_statfs_is_the_fallback_without_a_mount_table() -> None:
    nfs = filesystem_of("/nowhere/spool", mounts=MountTable(()), magic=lambda _: 0x6969)
    assert (nfs.fstype, nfs.kind, nfs.mount_point) == ("nfs", "network", None)
    fuse = filesystem_of("/nowhere", mounts=MountTable(()), magic=lambda _: 0x65735546)
    assert fuse.kind == "fuse"
    ext4 = filesystem_of("/nowhere", mounts=MountTable(()), magic=lambda _: 0xEF53)
    assert (ext4.fstype, ext4.kind) == ("statfs type 0xef53", "local")
    unknown = filesystem_of("/nowhere", mounts=MountTable(()), magic=no_statfs)
    assert (unknown.fstype, unknown.kind) == ("unknown", "local")


def test_statfs_is_asked_about_the_nearest_existing_directory(tmp_path: Path) -> None:
    asked: list[str] = []

    def magic(path: str) -> int:
        asked.append(path)
        return 0xFF534D42

    found = filesystem_of(tmp_path / "not" / "yet", mounts=MountTable(()), magic=magic)
    assert asked == [os.path.realpath(tmp_path)]
    assert (found.fstype, found.kind) == ("cifs", "network")


def test_an_autofs_placeholder_defers_to_statfs() -> None:
    found = filesystem_of("/mnt/auto/x", mounts=TABLE, magic=lambda _: 0x6969)
    assert (found.fstype, found.kind) == ("nfs", "network")


@pytest.mark.parametrize(
    ("fstype", "kind"),
    [
        ("nfs", "network"), ("nfs4", "network"), ("cifs", "network"), ("smb3", "network"),
        ("9p", "network"), ("ceph", "network"), ("glusterfs", "network"), ("lustre", "network"),
        ("fuse", "fuse"), ("fuseblk", "fuse"), ("fuse.sshfs", "fuse"), ("fuse.s3fs", "fuse"),
        ("fuse.gcsfuse", "fuse"), ("fuse.rclone", "fuse"), ("fuse.glusterfs", "fuse"),
        ("ext4", "local"), ("xfs", "local"), ("btrfs", "local"), ("zfs", "local"),
        ("tmpfs", "local"), ("overlay", "local"), ("fusee", "local"),
    ],
)  # fmt: skip
def test_kind_of_fstype(fstype: str, kind: str) -> None:
    assert kind_of_fstype(fstype) == kind


def test_every_statfs_magic_is_shared() -> None:
    assert all(kind != "local" for _, kind in STATFS_MAGIC.values())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="statfs via ctypes is Linux-only")
def test_statfs_magic_reads_the_real_f_type(tmp_path: Path) -> None:
    assert statfs_magic("/proc") == 0x9FA0  # PROC_SUPER_MAGIC
    assert statfs_magic(str(tmp_path / "missing")) is None
    live = filesystem_of(tmp_path)  # the real mount table and statfs of this machine
    assert live.kind == "local"
    assert live.fstype != "unknown"


def test_live_mount_table_reads_or_is_empty(tmp_path: Path) -> None:
    assert MountTable.read(str(tmp_path / "absent")).mounts == ()
    if os.path.exists("/proc/self/mountinfo"):
        assert MountTable.read().mount_of("/") is not None


# -- check_state_dir -----------------------------------------------------------------------


def test_a_journal_on_nfs_is_refused_with_one_line() -> None:
    with pytest.raises(ConfigError) as caught:
        check_state_dir(Path("/mnt/efs/spool/.spool_tool"), allow_network=False, mounts=TABLE)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("/mnt/efs/spool/.spool_tool: the journal would be on a network")
    assert "(nfs4 at /mnt/efs)" in message
    assert "--state-dir" in message
    assert "--allow-network-state" in message


def test_a_journal_on_fuse_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"fuse filesystem \(fuse\.sshfs"):
        check_state_dir(Path("/home/u/remote/s"), allow_network=False, mounts=TABLE)


def test_allow_network_state_accepts_it() -> None:
    found = check_state_dir(Path("/mnt/efs/s"), allow_network=True, mounts=TABLE)
    assert found.fstype == "nfs4"


def test_a_local_journal_is_accepted() -> None:
    found = check_state_dir(Path("/srv/spool/.spool_tool"), allow_network=False, mounts=TABLE)
    assert found.kind == "local"


def test_check_follows_symlinks_to_the_real_filesystem(tmp_path: Path) -> None:
    link = tmp_path / "spool"
    link.symlink_to("/mnt/efs/spool")
    mounts = MountTable((Mount("/", "ext4", "/dev/sda1"), Mount("/mnt/efs", "nfs4", "efs:/")))
    with pytest.raises(ConfigError, match="nfs4"):
        check_state_dir(link / ".spool_tool", allow_network=False, mounts=mounts)


# -- state_dir_for -------------------------------------------------------------------------


def test_default_state_dir_is_unchanged(tmp_path: Path) -> None:
    assert state_dir_for(tmp_path / "spool", None) == tmp_path / "spool" / ".spool_tool"


def test_state_dir_is_readable_and_stable(tmp_path: Path) -> None:
    spool = tmp_path / "spools" / "app a"
    spool.mkdir(parents=True)
    state = state_dir_for(spool, Path("/var/lib/spool_tool"))
    assert state.parent == Path("/var/lib/spool_tool")
    tail, _, digest = state.name.rpartition("-")
    assert tail.endswith("spools_app_a")
    assert len(digest) == HASH_DIGITS
    assert int(digest, 16) >= 0
    assert state_dir_for(spool, Path("/var/lib/spool_tool")) == state


def test_two_names_of_one_spool_share_a_state_dir(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    root = tmp_path / "state"
    assert state_dir_for(tmp_path / "link", root) == state_dir_for(real, root)
    assert state_dir_for(tmp_path / "link" / ".." / "real", root) == state_dir_for(real, root)


def test_spools_whose_names_sanitise_alike_do_not_collide(tmp_path: Path) -> None:
    root = tmp_path / "state"
    one, other = state_dir_for(Path("/srv/a b"), root), state_dir_for(Path("/srv/a_b"), root)
    assert one.name.rsplit("-", 1)[0] == other.name.rsplit("-", 1)[0]
    assert one != other


def test_the_root_directory_and_long_paths_get_short_names() -> None:
    assert state_dir_for(Path("/"), Path("/st")).name.startswith("root-")
    deep = Path("/" + "/".join(["d" * 50] * 20))
    assert len(state_dir_for(deep, Path("/st")).name) <= 48 + 1 + HASH_DIGITS


NAME_BYTES = st.binary(min_size=1, max_size=12).filter(lambda b: b"/" not in b and b"\0" not in b)


@given(  # real paths come from the OS: bytes, decoded with surrogateescape
    st.lists(NAME_BYTES, min_size=1, max_size=5, unique=True).map(
        lambda parts: os.fsdecode(b"/x/" + b"/".join(parts))
    )
)
def test_property_state_dir_names_are_safe_and_collision_free(path: str) -> None:
    root = Path("/st")
    name = state_dir_for(Path(path), root).name
    assert name == name.strip()
    assert not name.startswith(("-", "."))
    assert all(ch.isascii() and (ch.isalnum() or ch in "._-") for ch in name)
    other = state_dir_for(Path(path + "_"), root).name
    assert name != other


def test_state_root_inside_a_spool_is_refused(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    (spool / "new").mkdir(parents=True)
    with pytest.raises(ConfigError, match="inside"):
        check_state_root(spool / "new" / "state", [spool])
    with pytest.raises(ConfigError, match="completed"):
        check_state_root(spool / "completed", [spool])
    check_state_root(spool / "state", [spool])  # beside new/ is fine, like .spool_tool
    check_state_root(tmp_path / "elsewhere", [spool])
