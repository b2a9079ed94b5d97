"""Upload manifests (``--manifest TEMPLATE``): one JSON-lines object per run or daemon cycle and
spool, listing every object uploaded, each exactly once (schema: ``docs/manifest.md``).

Exactly once rests on the journal (``journal.py``): a file's manifest entry is queued in the
*outbox* in the transaction that records its completion; a killed run's files that reached
``completed/`` without that commit are queued by the next run's recovery (``Listing``). At the
end of a spool's upload phase the pending entries are *claimed* into a manifest whose key is
rendered once and committed before the PUT; after the PUT the manifest and its entries are
forgotten in one transaction. A kill or a failed PUT in between leaves the claim: the next run
PUTs the same key with the same entries (the same bytes) before it claims new ones.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from spool_tool.compress import wants_compression
from spool_tool.crashpoints import crash_point
from spool_tool.destinations.base import ObjectHeaders
from spool_tool.errors import (
    FatalError,
    FileError,
    ObjectExistsError,
    RetryableError,
    SpoolToolError,
)
from spool_tool.events import EventBus, ManifestFailed, ManifestWritten
from spool_tool.journal import Claim
from spool_tool.keys import FileFacts, full_key, normalise_spool_dir, short_hostname
from spool_tool.outbox import OutboxEntry
from spool_tool.spoolfs import Source, find_moved

if TYPE_CHECKING:
    from spool_tool.config import Compression, Config
    from spool_tool.destinations.base import Destination
    from spool_tool.events import ErrorKind
    from spool_tool.journal import Journal
    from spool_tool.outbox import ManifestClaim

SCHEMA_VERSION = 1
CONTENT_TYPE = "application/x-ndjson"


def rfc3339(ns: int | None) -> str | None:
    """``2026-12-03T10:15:00.123456789Z`` (UTC, trailing zeros of the fraction dropped); None
    for an unknown time or one outside the years 1-9999."""
    if ns is None:
        return None
    seconds, fraction = divmod(ns, 1_000_000_000)
    try:
        stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    except (ValueError, OverflowError, OSError):
        return None
    digits = f"{fraction:09d}".rstrip("0")
    return f"{stamp}.{digits}Z" if digits else f"{stamp}Z"


def entry_line(entry: OutboxEntry, spool_dir: str, hostname: str) -> str:
    """One manifest line (no newline). Deterministic: a re-PUT sends the same bytes."""
    record = {
        "v": SCHEMA_VERSION,
        "bucket": entry.bucket,
        "key": entry.key,
        "size": entry.size,
        "etag": entry.etag.strip('"') if entry.etag else None,
        "checksum": entry.checksum,
        "source": entry.source,
        "spool_dir": spool_dir,
        "hostname": hostname,
        "source_mtime": rfc3339(entry.source_mtime_ns),
        "uploaded_at": rfc3339(entry.uploaded_at_ns),
    }
    line = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:  # a name that is not UTF-8 (keys without {fname}): \udcXX
        return json.dumps(record, separators=(",", ":"))
    return line


@dataclass(frozen=True)
class Listing:
    """Where a spool's uploads are listed (``--manifest`` with an S3 destination): the bucket
    its entries name, and how a killed run's moved files are found again."""

    bucket: str
    completed: Path
    compress: Compression | None = None

    @classmethod
    def of(cls, config: Config, spool: Path) -> Listing | None:
        """None without ``--manifest``, or for the noop destination (it writes none)."""
        if config.manifest is None or config.destination.scheme != "s3":
            return None
        return cls(config.destination.bucket, spool / "completed", config.s3.compress)

    def recovered(self, claim: Claim, moved: Path, mtime_ns: int | None) -> OutboxEntry | None:
        """The entry of a claimed file a killed run moved to ``moved`` (in ``completed/``)
        without committing it: what the journal and the file still say. The object's size is
        the file's unless it was compressed (then unknown); ETag and checksum are known only
        for a file the journal had marked ``uploaded`` (multipart)."""
        try:
            st = os.lstat(moved)
        except FileNotFoundError:
            return None
        size = None if wants_compression(moved.name, self.compress) else st.st_size
        if mtime_ns is None and claim.state == "uploaded":
            mtime_ns = claim.mtime_ns
        return OutboxEntry(
            self.bucket, claim.key, size, claim.etag, claim.checksum, claim.name, mtime_ns,
            time.time_ns(),
        )  # fmt: skip

    def find_moved(self, gone: Iterable[Claim]) -> list[OutboxEntry]:
        """Entries for the claims whose file left ``new/`` into ``completed/`` (the same inode
        is there: only an upload S3 confirmed is moved) before their completion was committed.
        A file that left otherwise (deleted, moved away by hand) is not listed."""
        entries = []
        for claim in gone:
            moved = find_moved(self.completed, claim.name, claim.dev, claim.ino)
            entry = None if moved is None else self.recovered(claim, moved, None)
            if entry is not None:
                entries.append(entry)
        return entries


def render_key(config: Config, spool: Path) -> str:
    """A new manifest's key: ``--manifest`` rendered now, under the destination prefix (as file
    keys are); ``FileError`` for a key S3 cannot hold."""
    assert config.manifest is not None
    facts = FileFacts(
        name="",
        spool_dir=normalise_spool_dir(str(spool)),
        mtime=0.0,
        ctime=0.0,
        now=time.time(),
        hostname=config.hostname,
    )
    return full_key(config.destination.prefix, config.manifest.render(facts))


def example_uri(config: Config, spool: Path) -> str:
    """What a dry run shows: a key rendered as a run would (another UUID, another time)."""
    try:
        return config.destination.uri_for(render_key(config, spool))
    except FileError as exc:
        return f"{config.destination}{config.manifest.text if config.manifest else ''} ({exc})"


class ManifestWriter:
    """Writes one spool's manifests at the end of its upload phase (the spool's lock held)."""

    def __init__(
        self,
        spool: Path,
        journal: Journal,
        destination: Destination,
        config: Config,
        bus: EventBus,
    ) -> None:
        assert config.manifest is not None
        self.spool = spool
        self.journal = journal
        self.destination = destination
        self.config = config
        self.bus = bus
        self.template = config.manifest

    def write(self) -> None:
        """PUT the manifests an earlier run claimed and did not write (same key, same entries),
        then claim the pending entries into a new one and PUT it. A failed PUT is reported
        (exit 1) and stops here: its entries stay claimed for the next run."""
        for claim in self.journal.claimed_manifests():
            if not self._put(claim):
                return
        if not self.journal.pending_entries():
            return
        crash_point("before_manifest_claim")
        try:
            key = self._render()
        except FileError as exc:  # e.g. over 1024 bytes with a long prefix
            uri = f"{self.destination.uri}{self.template.text}"
            self._failed(uri, self.journal.pending_entries(), "file", exc.detail())
            return
        fresh = self.journal.claim_manifest(key, self._hostname())
        if fresh is None:
            return
        crash_point("after_manifest_claim")
        self._put(fresh)

    def _hostname(self) -> str:
        return self.config.hostname or short_hostname()

    def _render(self) -> str:
        return render_key(self.config, self.spool)

    def _put(self, claim: ManifestClaim) -> bool:
        uri = self.destination.uri.uri_for(claim.key)
        if not claim.entries:  # nothing to list (cannot be claimed so; forget it)
            self.journal.manifest_written(claim.id)
            return True
        try:
            size = self._send(claim)
        except SpoolToolError as exc:
            self._failed(uri, claim.entries, _kind(exc), exc.detail())
            return False
        except OSError as exc:  # the temp file in the state directory (disk full...)
            self._failed(uri, claim.entries, "file", f"cannot write it: {exc.strerror or exc}")
            return False
        crash_point("after_manifest_put")
        self.journal.manifest_written(claim.id)
        self.bus.emit(ManifestWritten(self.spool, uri, claim.entries, size))
        return True

    def _send(self, claim: ManifestClaim) -> int:
        """PUT the manifest's body through the destination (checksum verified by S3, multipart
        for a large one, its UploadId journaled); its size. A 412 under ``--no-clobber`` means
        an earlier PUT of this manifest landed: its key holds a UUID rendered for it alone."""
        if claim.upload_id is not None:
            self.destination.abort_upload(claim.key, claim.upload_id)
            self.journal.set_manifest_upload_id(claim.id, None)

        def record(upload_id: str | None) -> None:
            self.journal.set_manifest_upload_id(claim.id, upload_id)

        headers = ObjectHeaders(content_type=CONTENT_TYPE)
        with self._body(claim) as body:
            with contextlib.suppress(ObjectExistsError):
                self.destination.upload(body, claim.key, record, headers)
            return body.size

    @contextlib.contextmanager
    def _body(self, claim: ManifestClaim) -> Iterator[Source]:
        """The JSON-lines body in an anonymous temp file in the state directory (a manifest
        can be larger than memory should hold), open as a ``Source``."""
        tmp_dir = self.config.state_dir(self.spool) / "tmp"
        tmp_dir.mkdir(exist_ok=True)
        spool_dir = str(self.spool)
        with tempfile.TemporaryFile(dir=tmp_dir) as out:
            for entry in self.journal.manifest_entries(claim.id):
                line = entry_line(entry, spool_dir, claim.hostname) + "\n"
                out.write(line.encode("utf-8"))
            out.flush()
            fd = os.dup(out.fileno())
        source = Source(tmp_dir / f"manifest-{claim.id}.jsonl", fd, os.fstat(fd))
        try:
            yield source
        finally:
            source.close()

    def _failed(self, uri: str, entries: int, kind: ErrorKind, message: str) -> None:
        self.bus.emit(ManifestFailed(self.spool, uri, entries, kind, message))


def _kind(exc: SpoolToolError) -> ErrorKind:
    if isinstance(exc, FatalError):
        return "fatal"
    if isinstance(exc, RetryableError):
        return "retryable"
    return "file"
