"""The validated, frozen configuration of one run, and its parsing helpers.

Everything here is checked before any file is touched; a problem is a ``ConfigError`` (exit 2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from spool_tool.errors import ConfigError
from spool_tool.keys import KeyTemplate

ChecksumName = Literal["auto", "sha256", "crc64nvme", "crc32", "crc32c", "sha1", "off"]
CHECKSUMS: tuple[ChecksumName, ...] = (
    "auto", "sha256", "crc64nvme", "crc32", "crc32c", "sha1", "off",
)  # fmt: skip

DEFAULT_CONCURRENCY = 64
DEFAULT_MULTIPART_THRESHOLD = 16 * 1024 * 1024
DEFAULT_PART_SIZE = 16 * 1024 * 1024
MIN_PART_SIZE = 5 * 1024 * 1024

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
        raise ConfigError(f"invalid destination {text!r}: expected s3://BUCKET[/PREFIX] or noop")
    bucket, _, prefix = text.removeprefix("s3://").partition("/")
    if not bucket:
        raise ConfigError(f"invalid destination {text!r}: no bucket name")
    if not _BUCKET_RE.match(bucket) or ".." in bucket or _IP_RE.match(bucket):
        raise ConfigError(
            f"invalid destination {text!r}: {bucket!r} is not a valid S3 bucket name "
            "(3-63 characters: lowercase letters, digits, '.' and '-')"
        )
    prefix = prefix.strip("/")
    if "//" in prefix:
        raise ConfigError(f"invalid destination {text!r}: empty path segment in the prefix")
    return DestinationURI("s3", bucket, f"{prefix}/" if prefix else "")


def minutes(value: float, option: str) -> float:
    if value != value or value < 0 or value == float("inf"):  # noqa: PLR0124 - NaN check
        raise ConfigError(f"invalid {option} {value!r}: must be a finite number >= 0 (minutes)")
    return value


@dataclass(frozen=True)
class S3Options:
    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    checksum: ChecksumName = "auto"
    no_clobber: bool = False
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD
    part_size: int = DEFAULT_PART_SIZE
    max_attempts: int = 5
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    engine: Literal["auto", "boto3", "obstore"] = "auto"
    # Object options (README "S3 options").
    storage_class: str | None = None
    sse: Literal["AES256", "aws:kms"] | None = None
    sse_kms_key_id: str | None = None
    acl: str | None = None
    content_type: str | None = None  # None: guessed from the file name
    metadata: tuple[tuple[str, str], ...] = ()
    tags: tuple[tuple[str, str], ...] = ()
    compress: Literal["gzip", "zstd"] | None = None

    def __post_init__(self) -> None:
        if self.sse_kms_key_id and self.sse != "aws:kms":
            raise ConfigError("--sse-kms-key-id needs --sse aws:kms")
        if self.storage_class is not None and not re.fullmatch(r"[A-Z_]+", self.storage_class):
            raise ConfigError(
                f"invalid --storage-class {self.storage_class!r}: expected e.g. STANDARD_IA"
            )
        for option, pairs in (("--metadata", self.metadata), ("--tag", self.tags)):
            for key, _ in pairs:
                if not key or not re.fullmatch(r"[A-Za-z0-9_.:/=+@ -]+", key):
                    raise ConfigError(f"invalid {option} key {key!r}")
        if self.checksum in {"crc32c", "crc64nvme"} and self.engine == "boto3":
            _require_crt(self.checksum)


ACLS = (
    "private", "public-read", "public-read-write", "authenticated-read", "aws-exec-read",
    "bucket-owner-read", "bucket-owner-full-control",
)  # fmt: skip


def _require_crt(checksum: str) -> None:
    import importlib.util  # noqa: PLC0415

    if importlib.util.find_spec("awscrt") is None:
        raise ConfigError(
            f"--checksum {checksum} with boto3 needs the awscrt package (pip install 'boto3[crt]')"
        )


def parse_pairs(values: tuple[str, ...], option: str) -> tuple[tuple[str, str], ...]:
    """``("k=v", ...)`` -> ``(("k", "v"), ...)``; a value may itself contain ``=``."""
    pairs: list[tuple[str, str]] = []
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise ConfigError(f"invalid {option} {value!r}: expected KEY=VALUE")
        pairs.append((key, val))
    return tuple(pairs)


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

    def __post_init__(self) -> None:
        minutes(self.hold_for, "--hold-for")
        minutes(self.delete_after, "--delete-after")
        if not self.spool_dirs:
            raise ConfigError("no SPOOL_DIR given")
        if not 1 <= self.concurrency <= 1024:  # noqa: PLR2004 - sanity bound
            raise ConfigError(f"invalid --concurrency {self.concurrency}: must be 1..1024")
        if self.s3.part_size < MIN_PART_SIZE:
            raise ConfigError(f"invalid part size {self.s3.part_size}: S3's minimum is 5 MiB")
        if self.s3.endpoint_url is not None and not re.match(
            r"^https?://[^/\s]+", self.s3.endpoint_url
        ):
            raise ConfigError(
                f"invalid --endpoint-url {self.s3.endpoint_url!r}: expected http(s)://HOST[:PORT]"
            )
