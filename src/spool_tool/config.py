"""The validated, frozen configuration of one run, and its parsing helpers.

Everything here is checked before any file is touched; a problem is a ``ConfigError`` (exit 2).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from spool_tool.errors import ConfigError
from spool_tool.filters import PathFilter
from spool_tool.keys import KeyTemplate, bad_segment
from spool_tool.scan import ScanOptions
from spool_tool.statefs import check_state_dir, check_state_root, state_dir_for

# Each choice list is declared once, as a Literal; the option schema (options.py) reads the
# tuples, mypy reads the Literals.
ChecksumName = Literal["auto", "sha256", "crc64nvme", "crc32", "crc32c", "sha1", "off"]
AddressingStyle = Literal["auto", "path", "virtual"]
EngineName = Literal["auto", "obstore", "boto3"]
ConcurrencyMode = Literal["adaptive", "fixed"]
SSEMode = Literal["AES256", "aws:kms"]
Compression = Literal["gzip", "zstd"]
ACLName = Literal[
    "private", "public-read", "public-read-write", "authenticated-read", "aws-exec-read",
    "bucket-owner-read", "bucket-owner-full-control",
]  # fmt: skip
CHECKSUMS: tuple[str, ...] = get_args(ChecksumName)
ADDRESSING_STYLES: tuple[str, ...] = get_args(AddressingStyle)
ENGINES: tuple[str, ...] = get_args(EngineName)
CONCURRENCY_MODES: tuple[str, ...] = get_args(ConcurrencyMode)
SSE_MODES: tuple[str, ...] = get_args(SSEMode)
COMPRESSIONS: tuple[str, ...] = get_args(Compression)
ACLS: tuple[str, ...] = get_args(ACLName)
CRT_CHECKSUMS = frozenset({"crc32c", "crc64nvme"})  # botocore needs awscrt to compute these

DEFAULT_CONCURRENCY = 64
MTIME_KEY = "mtime"  # rclone's metadata key for the source modification time
DEFAULT_MULTIPART_THRESHOLD = 16 * 1024 * 1024
DEFAULT_PART_SIZE = 8 * 1024 * 1024
DEFAULT_PART_CONCURRENCY = 4

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP_RE = re.compile(r"^\d+\.\d+\.\d+\.\d+$")


@dataclass(frozen=True)
class DestinationURI:
    """A parsed destination: ``noop`` or ``s3://BUCKET/PREFIX/`` (prefix empty or ending in /)."""

    scheme: Literal["noop", "s3"]
    bucket: str = ""
    prefix: str = ""

    def uri_for(self, key: str) -> str:
        if self.scheme == "noop":
            return f"noop://{key}"
        return f"s3://{self.bucket}/{key}"

    def __str__(self) -> str:
        if self.scheme == "noop":
            return "noop://"
        return f"s3://{self.bucket}/{self.prefix}"


def parse_destination(text: str) -> DestinationURI:
    if text in {"noop", "noop://"}:
        return DestinationURI("noop")
    if not text.startswith("s3://"):
        raise _bad_destination(text, "expected s3://BUCKET[/PREFIX] or noop")
    bucket, _, prefix = text.removeprefix("s3://").partition("/")
    if not bucket:
        raise _bad_destination(text, "no bucket name")
    if not _BUCKET_RE.match(bucket) or ".." in bucket or _IP_RE.match(bucket):
        raise _bad_destination(
            text,
            f"{bucket!r} is not a valid S3 bucket name "
            "(3-63 characters: lowercase letters, digits, '.' and '-')",
        )
    prefix = prefix.strip("/")
    segment = bad_segment(prefix) if prefix else None
    if segment is not None:
        raise _bad_destination(text, f"{segment} in the prefix")
    return DestinationURI("s3", bucket, f"{prefix}/" if prefix else "")


def _bad_destination(text: str, reason: str) -> ConfigError:
    return ConfigError(reason, option="destination", value=text, spelled="destination")


@dataclass(frozen=True)
class MinFree:
    """``--min-free``: bytes, or a percentage of the filesystem's size (0 < percent < 100)."""

    bytes: int | None = None
    percent: float | None = None

    def watermark(self, total: int) -> int:
        """The free bytes cleanup keeps on a filesystem of ``total`` bytes."""
        if self.bytes is not None:
            return self.bytes
        assert self.percent is not None
        return math.ceil(total * self.percent / 100)


@dataclass(frozen=True)
class S3Options:
    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    checksum: ChecksumName = "auto"
    no_clobber: bool = False
    addressing_style: AddressingStyle = "auto"
    multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD
    part_size: int = DEFAULT_PART_SIZE
    part_concurrency: int = DEFAULT_PART_CONCURRENCY
    max_attempts: int = 5
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    engine: EngineName = "auto"
    concurrency_mode: ConcurrencyMode = "adaptive"
    bwlimit: int | None = None  # bytes per second over every upload of the process
    # Object options (README "S3 options").
    storage_class: str | None = None
    sse: SSEMode | None = None
    sse_kms_key_id: str | None = None
    acl: ACLName | None = None
    content_type: str | None = None  # None: guessed from the file name
    metadata: tuple[tuple[str, str], ...] = ()
    tags: tuple[tuple[str, str], ...] = ()
    compress: Compression | None = None
    preserve_mtime: bool = False

    def __post_init__(self) -> None:
        """Checks across options; each value alone was checked by its parser (options.py)."""
        if self.preserve_mtime and any(k.lower() == MTIME_KEY for k, _ in self.metadata):
            raise ConfigError(
                f"--metadata {MTIME_KEY}=... conflicts with --preserve-mtime",
                option="preserve_mtime",
            )
        if self.sse_kms_key_id and self.sse != "aws:kms":
            raise ConfigError(
                "needs --sse aws:kms", option="sse_kms_key_id", value=self.sse_kms_key_id
            )
        if self.engine != "auto":  # a named engine that cannot send these options
            from spool_tool.destinations.engines import choose_engine  # noqa: PLC0415 - cycle

            choose_engine(self)
        if self.checksum in CRT_CHECKSUMS:
            _require_crt(self.checksum)


def _require_crt(checksum: str) -> None:
    """botocore computes these only with awscrt (a dependency, checked in case it is missing);
    botocore sends every multipart part, whichever engine sends the single PUTs."""
    from botocore.compat import HAS_CRT  # noqa: PLC0415 - imports awscrt: only when it matters

    if not HAS_CRT:
        raise ConfigError(
            "needs the awscrt package on the boto3 path (pip install awscrt)",
            option="checksum",
            value=checksum,
        )


@dataclass(frozen=True)
class Config:
    spool_dirs: tuple[Path, ...]
    destination: DestinationURI
    template: KeyTemplate = field(default_factory=lambda: KeyTemplate.parse("{fname}"))
    hold_for: float = 0.0
    delete_after: float = 60.0
    dry_run: bool = False
    upload: bool = True
    cleanup: bool = True
    concurrency: int = DEFAULT_CONCURRENCY
    s3: S3Options = field(default_factory=S3Options)
    verify_before_delete: bool = False
    hostname: str = ""  # the {hostname} token; "" means this machine's short name
    manifest: KeyTemplate | None = None  # --manifest: key template of the upload manifests
    min_free: MinFree | None = None  # disk-pressure retention in cleanup (diskspace.py)
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    marker_suffix: str | None = None
    state_root: Path | None = None  # --state-dir; None: SPOOL_DIR/.spool_tool
    allow_network_state: bool = False
    recursive: bool = False  # files in subdirectories of new/ are eligible
    max_depth: int | None = None  # --recursive: levels below new/ (1: new/ alone); None: any
    prune_empty_dirs: bool = False  # --recursive: rmdir empty directories in new/ after the hold
    path_filter: PathFilter = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Each value was checked by its parser in options.py (ranges, sizes, templates).
        if not self.spool_dirs:
            raise ConfigError("no SPOOL_DIR given")
        object.__setattr__(self, "path_filter", PathFilter(self.include, self.exclude))
        if not self.recursive:
            if self.max_depth is not None:
                raise ConfigError("needs --recursive", option="max_depth", value=self.max_depth)
            if self.prune_empty_dirs:
                raise ConfigError("needs --recursive", option="prune_empty_dirs")
        if self.state_root is not None:
            check_state_root(self.state_root, self.spool_dirs)
        for spool in self.spool_dirs:  # invariant: refused before anything is touched
            check_state_dir(self.state_dir(spool), allow_network=self.allow_network_state)

    def state_dir(self, spool: Path) -> Path:
        """Where ``spool``'s journal and lock live (``--state-dir``)."""
        return state_dir_for(spool, self.state_root)

    @property
    def scan_options(self) -> ScanOptions:
        depth = self.max_depth if self.recursive else 1
        return ScanOptions(self.path_filter, self.marker_suffix, depth)


def check_distinct_spools(configs: Iterable[Config]) -> None:
    """Refuse a spool directory named twice (a repeated argument, two ``[[spool]]`` sections, a
    symlink to the same directory): its files would ship with whichever job came first, and a
    second job's settings would silently not apply to them."""
    seen: dict[str, Path] = {}
    for config in configs:
        for spool in config.spool_dirs:
            real = os.path.realpath(spool)
            if real in seen:
                raise ConfigError(
                    f"the same directory as {seen[real]}, already named: name each spool once",
                    option="dirs",
                    value=str(spool),
                )
            seen[real] = spool
