"""The journal's outbox of manifest entries and its claimed manifests (``--manifest``).

Tables beside the claims and the ledger in the spool's journal (``journal.py``, whose
``Journal`` has these methods): ``outbox`` holds one row per uploaded object not yet in a
written manifest, queued in the transaction that records the file's completion; ``manifests``
one row per manifest claimed (key fixed, entries assigned) and not yet written. How they give
exactly once: ``manifest.py``.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (   -- uploaded, not yet in a written manifest (--manifest)
    id              INTEGER PRIMARY KEY,  -- completion order: the order of a manifest's lines
    manifest        INTEGER,              -- manifests.id once claimed into one; NULL: pending
    bucket          TEXT NOT NULL,
    key             TEXT NOT NULL,
    size            INTEGER,              -- NULL: not known (see manifest.py, recovered files)
    etag            TEXT,
    checksum        TEXT,
    source          BLOB NOT NULL,        -- os.fsencode(the claim's name: relative to new/)
    source_mtime_ns INTEGER,
    uploaded_at_ns  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_by_manifest ON outbox (manifest);
CREATE TABLE IF NOT EXISTS manifests (    -- claimed manifests, deleted once written
    id         INTEGER PRIMARY KEY,
    key        TEXT NOT NULL,             -- rendered once, at the claim; every retry PUTs it
    hostname   TEXT NOT NULL,
    claimed_at REAL NOT NULL,
    upload_id  TEXT                       -- open multipart upload of a large manifest
);
"""


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One line of a manifest: an object uploaded and not yet listed in a written manifest."""

    bucket: str
    key: str
    size: int | None
    etag: str | None
    checksum: str | None
    source: str
    source_mtime_ns: int | None
    uploaded_at_ns: int


@dataclass(frozen=True, slots=True)
class ManifestClaim:
    """A manifest whose key and entries are fixed (committed before its PUT)."""

    id: int
    key: str
    hostname: str
    entries: int
    upload_id: str | None = None


def queue(db: sqlite3.Connection, entries: Iterable[OutboxEntry]) -> None:
    db.executemany(
        "INSERT INTO outbox (bucket, key, size, etag, checksum, source, source_mtime_ns, "
        "uploaded_at_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (e.bucket, e.key, e.size, e.etag, e.checksum, os.fsencode(e.source), e.source_mtime_ns,
             e.uploaded_at_ns)
            for e in entries
        ],
    )  # fmt: skip


class ManifestQueue:
    """The outbox and manifest methods of ``Journal`` (which provides the database, its mutex,
    ``_guard`` and ``_transaction``)."""

    _db: sqlite3.Connection
    _mutex: threading.RLock

    def _guard(self) -> contextlib.AbstractContextManager[None]:
        raise NotImplementedError

    def _transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def pending_entries(self) -> int:
        """Outbox entries not yet claimed into a manifest (0 for a journal from before them)."""
        with self._mutex:
            try:
                row = self._db.execute(
                    "SELECT count(*) FROM outbox WHERE manifest IS NULL"
                ).fetchone()
            except sqlite3.OperationalError:  # a read-only journal without the table
                return 0
        return int(row[0])

    def unlisted(self) -> int:
        """Outbox entries not in a written manifest: pending or claimed (0 for a journal from
        before manifests)."""
        with self._mutex:
            try:
                row = self._db.execute("SELECT count(*) FROM outbox").fetchone()
            except sqlite3.OperationalError:  # a read-only journal without the table
                return 0
        return int(row[0])

    def claimed_manifests(self) -> list[ManifestClaim]:
        """Manifests claimed by an earlier run and not written (killed, or the PUT failed)."""
        with self._mutex, self._guard():
            rows = self._db.execute(
                "SELECT m.id, m.key, m.hostname, count(o.id), m.upload_id FROM manifests m "
                "LEFT JOIN outbox o ON o.manifest = m.id GROUP BY m.id ORDER BY m.id"
            ).fetchall()
        return [ManifestClaim(*row) for row in rows]

    def claim_manifest(self, key: str, hostname: str) -> ManifestClaim | None:
        """Fix a new manifest's key and assign it every pending entry, in one transaction;
        None when nothing is pending."""
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO manifests (key, hostname, claimed_at) VALUES (?, ?, ?)",
                (key, hostname, time.time()),
            )
            manifest_id = cursor.lastrowid
            assigned = db.execute(
                "UPDATE outbox SET manifest = ? WHERE manifest IS NULL", (manifest_id,)
            ).rowcount
            if not assigned:
                db.execute("DELETE FROM manifests WHERE id = ?", (manifest_id,))
        if not assigned or manifest_id is None:
            return None
        return ManifestClaim(manifest_id, key, hostname, assigned)

    def manifest_entries(self, manifest_id: int, chunk: int = 1000) -> Iterator[OutboxEntry]:
        """A claimed manifest's entries in completion order, read ``chunk`` rows at a time."""
        last = 0
        while True:
            with self._mutex, self._guard():
                rows = self._db.execute(
                    "SELECT id, bucket, key, size, etag, checksum, source, source_mtime_ns, "
                    "uploaded_at_ns FROM outbox WHERE manifest = ? AND id > ? ORDER BY id "
                    "LIMIT ?",
                    (manifest_id, last, chunk),
                ).fetchall()
            if not rows:
                return
            for row in rows:
                last = row[0]
                bucket, key, size, etag, checksum, source, mtime_ns, at_ns = row[1:]
                yield OutboxEntry(
                    bucket, key, size, etag, checksum, os.fsdecode(source), mtime_ns, at_ns
                )

    def set_manifest_upload_id(self, manifest_id: int, upload_id: str | None) -> None:
        with self._transaction() as db:
            db.execute("UPDATE manifests SET upload_id = ? WHERE id = ?", (upload_id, manifest_id))

    def manifest_written(self, manifest_id: int) -> None:
        """The manifest's PUT succeeded: its entries are listed; forget both at once."""
        with self._transaction() as db:
            db.execute("DELETE FROM outbox WHERE manifest = ?", (manifest_id,))
            db.execute("DELETE FROM manifests WHERE id = ?", (manifest_id,))
