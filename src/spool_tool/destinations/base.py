"""The contract every destination implements."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from spool_tool.config import DestinationURI
    from spool_tool.spoolfs import Source

UploadIdRecorder = Callable[[str | None], None]
"""Called with a multipart UploadId as soon as S3 hands it out, and with None once it is
completed or aborted; the journal persists it so a rerun can abort an orphan."""


@dataclass(frozen=True, slots=True)
class ObjectHeaders:
    """Per-object HTTP headers decided by the pipeline (the rest come from S3Options)."""

    content_type: str | None = None
    content_encoding: str | None = None
    metadata: tuple[tuple[str, str], ...] = ()  # per object (--preserve-mtime), beside --metadata


NO_HEADERS = ObjectHeaders()


def rclone_mtime(mtime_ns: int) -> str:
    """rclone's ``mtime`` metadata value: Unix seconds, exact from nanoseconds, up to nine
    decimals with trailing zeros dropped, no ``.`` for a whole second (``1354040105.5``)."""
    sign = "-" if mtime_ns < 0 else ""
    seconds, fraction = divmod(abs(mtime_ns), 1_000_000_000)
    decimals = f"{fraction:09d}".rstrip("0")
    return f"{sign}{seconds}.{decimals}" if decimals else f"{sign}{seconds}"


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What a HEAD of an uploaded object says (for --verify-before-delete)."""

    key: str
    size: int
    etag: str | None = None
    checksum: str | None = None


@dataclass(frozen=True, slots=True)
class UploadResult:
    key: str
    size: int
    etag: str | None = None
    checksum: str | None = None  # "ALGORITHM:base64value" as S3 confirmed it


class Destination(Protocol):
    """Where files go. Errors raised are ``spool_tool.errors`` classes, never library ones.

    Methods block and must be safe to call from many threads at once (the pipeline's workers).
    ``upload`` must not return before the destination confirmed the complete object; it reads
    the source only through ``source`` (an fd opened with O_NOFOLLOW) and never closes it.
    """

    uri: DestinationURI

    def preflight(self) -> None:
        """Fail fast (``FatalError``) when no upload can succeed: no bucket, unreachable.

        Idempotent: after one success, later calls return at once (a daemon calls it every
        cycle); after a failure the next call checks again."""

    def upload(
        self,
        source: Source,
        key: str,
        record_upload_id: UploadIdRecorder,
        headers: ObjectHeaders = ...,
    ) -> UploadResult: ...

    def abort_upload(self, key: str, upload_id: str) -> None:
        """Abort a multipart upload left by an earlier, killed run."""

    def head(self, key: str) -> ObjectInfo | None:
        """The object's size/checksum, or None when it does not exist."""

    def cancel(self) -> None:
        """A signal arrived: abandon long transfers cleanly (abort, never orphan)."""

    def close(self) -> None: ...
