"""Crash-safe per-spool state: the lock, claims with fixed keys, open multipart uploads, ledger.

Lives in ``SPOOL_DIR/.spool_tool/`` as an SQLite database (WAL mode) plus a lock file.

* **Lock**: one spool_tool process works on a spool at a time (``flock`` on ``lock``); another
  process skips the spool with a notice. The kernel drops the lock when a process dies.
* **Claims**: a file's key is rendered once, at its first claim, and committed durably
  (``synchronous=FULL``) *before* any byte is sent; a rerun after a crash finds the claim and
  uploads to the same key. Claims are written in batches: one fsync per batch, not per file.
* **Uploads**: a multipart UploadId is committed as soon as S3 hands it out, so a rerun after
  SIGKILL can abort it. A file whose upload completed is marked ``uploaded`` (batched) so a
  rerun only moves it when it is unchanged.
* **Ledger**: one row per completed file (name in ``completed/``, key, size, ETag, checksum),
  removed when cleanup deletes the file; used by ``--verify-before-delete`` and ``--status``.
* **Outbox and manifests** (``--manifest``, ``manifest.py``): a completed file is queued in the
  outbox in the same transaction that records its completion, so an uploaded file is listed
  whatever kill follows. A manifest is *claimed* (its key fixed, its entries assigned to it) in
  one transaction before its PUT, and *written* (its row and its entries deleted) in one after:
  a rerun re-PUTs a claimed manifest to the same key with the same entries, so no entry is in
  two manifests and none is lost.

A file's ``name`` in the claims and ledger tables is its path relative to ``new/`` (or
``completed/``), ``/``-separated: for a file directly in the directory (every file without
``--recursive``) that is its name, as it always was, so journals written before nested spools
stay valid.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from spool_tool.errors import FatalError
from spool_tool.outbox import OUTBOX_SCHEMA, ManifestQueue, OutboxEntry, queue
from spool_tool.spoolfs import STATE_DIR

SCHEMA = """
CREATE TABLE IF NOT EXISTS claims (
    name       BLOB PRIMARY KEY,   -- os.fsencode(path relative to new/, '/'-separated)
    dev        INTEGER NOT NULL,
    ino        INTEGER NOT NULL,
    key        TEXT NOT NULL,      -- fixed at first claim, reused by every rerun
    claimed_at REAL NOT NULL,
    state      TEXT NOT NULL DEFAULT 'claimed',   -- claimed | uploaded
    size       INTEGER,            -- identity of the file as uploaded (state = uploaded)
    mtime_ns   INTEGER,
    upload_id  TEXT,               -- open multipart upload, if any
    etag       TEXT,
    checksum   TEXT
);
CREATE TABLE IF NOT EXISTS ledger (
    name        BLOB PRIMARY KEY,  -- os.fsencode(path relative to completed/)
    key         TEXT NOT NULL,
    size        INTEGER NOT NULL,
    etag        TEXT,
    checksum    TEXT,
    uploaded_at REAL NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class Claim:
    name: str
    dev: int
    ino: int
    key: str
    state: str = "claimed"
    size: int | None = None
    mtime_ns: int | None = None
    upload_id: str | None = None
    etag: str | None = None
    checksum: str | None = None

    def is_for(self, st: os.stat_result) -> bool:
        """The claim belongs to this inode (a file replaced by another inode is a new file)."""
        return (self.dev, self.ino) == (st.st_dev, st.st_ino)


@dataclass(frozen=True, slots=True)
class Completion:
    """What the ledger records once a file is in ``completed/``."""

    new_name: str
    completed_name: str
    key: str
    size: int
    etag: str | None
    checksum: str | None
    source_mtime_ns: int | None = None  # the file's mtime as uploaded (manifest entries)
    uploaded_at_ns: int | None = None  # when it reached completed/ (None: the commit's time)

    def entry(self, bucket: str, now_ns: int) -> OutboxEntry:
        """Its manifest entry, for an object in ``bucket``."""
        at = self.uploaded_at_ns if self.uploaded_at_ns is not None else now_ns
        return OutboxEntry(
            bucket, self.key, self.size, self.etag, self.checksum, self.new_name,
            self.source_mtime_ns, at,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    key: str
    size: int
    etag: str | None
    checksum: str | None


class SpoolBusyError(Exception):
    """Another spool_tool process holds this spool's lock."""


# SQLite's own words for "this file is not (or no longer) a sound database".
_DAMAGED = frozenset({"SQLITE_CORRUPT", "SQLITE_NOTADB"})


def journal_error(path: Path, exc: sqlite3.Error) -> FatalError:
    """The one sentence for a journal that cannot be used, with what the operator can do.

    A damaged journal (a corrupt page, not a database) is not repaired automatically: the
    operator moves it aside and the next run starts a fresh one (README, "Recovering a damaged
    journal", says what that costs)."""
    if exc.sqlite_errorname in _DAMAGED:
        return FatalError(
            f"{path}: the journal is damaged ({exc}); with no spool_tool running on this spool, "
            f"move it aside (mv {path} {path}.damaged, and its -wal and -shm files if any) and "
            "run again: a fresh journal is started (README: Recovering a damaged journal)"
        )
    return FatalError(f"{path}: cannot use the journal: {exc}")


def _enc(name: str) -> bytes:
    return os.fsencode(name)


def _dec(raw: bytes) -> str:
    return os.fsdecode(raw)


class Journal(ManifestQueue):
    """Open with ``Journal.open(spool_dir)`` (takes the lock) or ``Journal.read_only``."""

    def __init__(self, db: sqlite3.Connection, lock_fd: int | None, path: Path) -> None:
        """Loads the claims; ``FatalError`` (see ``journal_error``) if they cannot be read."""
        self._db = db
        self._lock_fd = lock_fd
        self.path = path
        # Multipart UploadIds are recorded from upload threads: serialise all access.
        self._mutex = threading.RLock()
        self._claims: dict[str, Claim] = {}
        with self._guard():
            for row in db.execute(
                "SELECT name, dev, ino, key, state, size, mtime_ns, upload_id, etag, checksum "
                "FROM claims"
            ):
                claim = Claim(_dec(row[0]), *row[1:])
                self._claims[claim.name] = claim

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Every use of the database: an SQLite error becomes one ``FatalError`` sentence."""
        try:
            yield
        except sqlite3.Error as exc:
            raise journal_error(self.path, exc) from exc

    @classmethod
    def open(cls, spool_dir: Path, state_dir: Path | None = None) -> Self:
        """Take the spool's lock and open (or create) its journal, in ``state_dir`` (default
        ``SPOOL_DIR/.spool_tool``; ``statefs.state_dir_for``). ``SpoolBusyError`` when another
        process holds the lock; ``FatalError`` when the journal cannot be used."""
        state = spool_dir / STATE_DIR if state_dir is None else state_dir
        try:
            # Under --state-dir DIR the subdirectory (and DIR) may not exist yet.
            shared = state_dir is not None
            state.mkdir(parents=shared, exist_ok=True, mode=0o700 if shared else 0o777)
            lock_fd = os.open(state / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise FatalError(f"{spool_dir}: cannot create state directory: {exc.strerror}") from exc
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(lock_fd)
            raise SpoolBusyError(str(spool_dir)) from exc
        path = state / "journal.sqlite3"
        try:
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            os.close(lock_fd)
            raise journal_error(path, exc) from exc
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(SCHEMA)
            db.executescript(OUTBOX_SCHEMA)
            return cls(db, lock_fd, path)
        except (sqlite3.Error, FatalError) as exc:
            db.close()
            os.close(lock_fd)
            if isinstance(exc, FatalError):
                raise
            raise journal_error(path, exc) from exc

    @classmethod
    def read_only(cls, spool_dir: Path, state_dir: Path | None = None) -> Self | None:
        """For ``--dry-run`` and ``--status``: read existing state, create nothing, no lock.

        None when there is no journal (or it cannot be opened, e.g. not readable); a damaged
        one raises ``FatalError`` (``journal_error``) so that the operator hears of it."""
        path = (spool_dir / STATE_DIR if state_dir is None else state_dir) / "journal.sqlite3"
        if not path.exists():
            return None
        try:
            # With a writer active (its -wal file exists), read through the WAL to see its
            # latest claims. Otherwise open immutable, so that no -wal/-shm files appear: the
            # writer checkpoints and removes its WAL when it closes.
            live = path.with_name(path.name + "-wal").exists()
            mode = "mode=ro" if live else "mode=ro&immutable=1"
            uri = f"{path.absolute().as_uri()}?{mode}"  # a file URI needs an absolute path
            db = sqlite3.connect(uri, uri=True, isolation_level=None)
        except sqlite3.Error:
            return None
        try:
            db.execute("SELECT 1 FROM claims LIMIT 1")
        except sqlite3.Error as exc:
            db.close()
            if exc.sqlite_errorname in _DAMAGED:
                raise journal_error(path, exc) from exc
            return None
        try:
            return cls(db, None, path)
        except FatalError:
            db.close()
            raise

    def close(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._mutex, self._guard():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                with contextlib.suppress(sqlite3.Error):  # the cause is what we report
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- claims -------------------------------------------------------------------------------

    @property
    def claims(self) -> dict[str, Claim]:
        return self._claims

    def get(self, name: str) -> Claim | None:
        return self._claims.get(name)

    def add_claims(self, claims: Iterable[Claim]) -> None:
        """Commit new claims durably, in one transaction (one fsync)."""
        batch = list(claims)
        if not batch:
            return
        now = time.time()
        with self._transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO claims (name, dev, ino, key, claimed_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [(_enc(c.name), c.dev, c.ino, c.key, now) for c in batch],
            )
        for c in batch:
            self._claims[c.name] = c

    def drop_claims(self, names: Iterable[str]) -> None:
        batch = [n for n in names if n in self._claims]
        if not batch:
            return
        with self._transaction() as db:
            db.executemany("DELETE FROM claims WHERE name = ?", [(_enc(n),) for n in batch])
        for n in batch:
            del self._claims[n]

    def rename_claim(self, old: str, new: str) -> Claim:
        """The claim of ``old`` now belongs to ``new`` (its file moved within ``new/`` after
        its upload); committed at once. Key and upload state are kept."""
        with self._transaction() as db:
            db.execute("UPDATE claims SET name = ? WHERE name = ?", (_enc(new), _enc(old)))
            claim = dataclasses.replace(self._claims.pop(old), name=new)
            self._claims[new] = claim
        return claim

    def set_upload_id(self, name: str, upload_id: str | None) -> None:
        """Record (or clear) an open multipart upload; committed at once."""
        with self._transaction() as db:
            db.execute("UPDATE claims SET upload_id = ? WHERE name = ?", (upload_id, _enc(name)))
            self._claims[name] = dataclasses.replace(self._claims[name], upload_id=upload_id)

    def mark_uploaded(
        self, name: str, size: int, mtime_ns: int, etag: str | None, checksum: str | None
    ) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE claims SET state = 'uploaded', size = ?, mtime_ns = ?, etag = ?, "
                "checksum = ?, upload_id = NULL WHERE name = ?",
                (size, mtime_ns, etag, checksum, _enc(name)),
            )
            self._claims[name] = dataclasses.replace(
                self._claims[name],
                state="uploaded",
                size=size,
                mtime_ns=mtime_ns,
                etag=etag,
                checksum=checksum,
                upload_id=None,
            )

    def complete(self, done: Iterable[Completion], *, manifest_bucket: str | None = None) -> None:
        """Files are in ``completed/`` (and the directories fsynced): drop their claims and
        record them in the ledger, in one transaction; with ``manifest_bucket``
        (``--manifest``), queue them in the outbox in the same transaction."""
        batch = list(done)
        if not batch:
            return
        now = time.time()
        with self._transaction() as db:
            db.executemany(
                "DELETE FROM claims WHERE name = ?", [(_enc(c.new_name),) for c in batch]
            )
            db.executemany(
                "INSERT OR REPLACE INTO ledger (name, key, size, etag, checksum, uploaded_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(_enc(c.completed_name), c.key, c.size, c.etag, c.checksum, now) for c in batch],
            )
            if manifest_bucket is not None:
                queue(db, (c.entry(manifest_bucket, int(now * 1e9)) for c in batch))
        for c in batch:
            self._claims.pop(c.new_name, None)

    def list_recovered(self, entries: Iterable[OutboxEntry]) -> None:
        """Files a killed run moved to ``completed/`` before committing their completion: drop
        their claims (named by ``source``) and queue them in the outbox, in one transaction.
        The ledger is left as a killed run leaves it (no row: what S3 confirmed is not fully
        known)."""
        batch = list(entries)
        if not batch:
            return
        with self._transaction() as db:
            db.executemany("DELETE FROM claims WHERE name = ?", [(_enc(e.source),) for e in batch])
            queue(db, batch)
        for e in batch:
            self._claims.pop(e.source, None)

    # -- ledger -------------------------------------------------------------------------------

    def ledger_entry(self, completed_name: str) -> LedgerEntry | None:
        with self._mutex, self._guard():
            row = self._db.execute(
                "SELECT key, size, etag, checksum FROM ledger WHERE name = ?",
                (_enc(completed_name),),
            ).fetchone()
        return None if row is None else LedgerEntry(*row)

    def forget_completed(self, names: Iterable[str]) -> None:
        batch = [(_enc(n),) for n in names]
        if batch:
            with self._transaction() as db:
                db.executemany("DELETE FROM ledger WHERE name = ?", batch)
