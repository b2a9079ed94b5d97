"""The upload phase for one spool: claim -> upload -> verify -> move, over bounded concurrency.

A file leaves ``new/`` only after the destination confirmed the complete object and the file
was re-checked unchanged (dev, inode, size, mtime) by descriptor and by name.

Threads, not asyncio tasks, carry the files: ``--concurrency`` workers (as many as there are
files when all of them fit in the first claim batch) each take the next file from one shared
stream (scan -> claim in batches, one batch ahead: ``ClaimFeed``) and do the whole per-file
job (open, upload, re-check, move) with blocking calls that release the GIL.
There is no coordinator to hand files over, so a file costs no thread wake-ups of its own;
the files in flight are bounded by the number of workers, and the scan advances only as they
take files (backpressure). Measured against an asyncio task per file with a thread hop for each
upload, this removes most of the per-file scheduling cost (BENCHMARKS.md).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import math
import mimetypes
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from spool_tool.compress import ENCODING, SUFFIX, compress_to_temp, wants_compression
from spool_tool.config import MTIME_KEY
from spool_tool.crashpoints import crash_point
from spool_tool.destinations.base import ObjectHeaders, UploadResult, rclone_mtime
from spool_tool.errors import (
    ChangedDuringUploadError,
    FatalError,
    FileError,
    RetryableError,
    SpoolToolError,
)
from spool_tool.events import (
    BytesSent,
    ErrorKind,
    EventBus,
    FileFailed,
    FileMoved,
    FileUploaded,
    RunStopped,
)
from spool_tool.journal import Claim, Completion, Journal
from spool_tool.keys import (
    FileFacts,
    creation_time,
    full_key,
    normalise_spool_dir,
    whole_seconds,
)
from spool_tool.manifest import Listing
from spool_tool.scan import Candidate, has_marker, is_old_enough
from spool_tool.spoolfs import (
    At,
    Identity,
    Source,
    SpoolFS,
    dir_beneath,
    fsync_dir,
    open_beneath,
    open_source,
    source_state,
    unchanged_since,
)

if TYPE_CHECKING:
    from pathlib import Path

    from spool_tool.config import Config
    from spool_tool.destinations.base import Destination
    from spool_tool.runstate import RunState

log = logging.getLogger(__name__)

Inode = tuple[int, int]  # (st_dev, st_ino)
CLAIM_BATCH = 256  # claims committed per transaction (one fsync)
FLUSH_EVERY = 256  # completions per directory fsync + journal transaction
# Consecutive transient failures, with no success in between, after which the run stops.
TRANSIENT_FAILURE_LIMIT = 20


class SpoolUploader:
    """Ships one spool's claimed files on ``--concurrency`` worker threads (the lock is held)."""

    def __init__(
        self,
        spool_dir: Path,
        journal: Journal,
        destination: Destination,
        config: Config,
        bus: EventBus,
        state: RunState,
        fs: SpoolFS,
        orphans: dict[Inode, Claim] | None = None,
    ) -> None:
        """``orphans``: uploaded claims whose file left its name (``recover_killed_run``)."""
        self.spool_dir = spool_dir
        self.new = spool_dir / "new"
        self.completed = spool_dir / "completed"
        self._new_at, self._completed_at = At(self.new), At(self.completed)  # by path
        self.journal = journal
        self.destination = destination
        self.config = config
        self.bus = bus
        self.state = state
        self.fs = fs
        self._spool_token = normalise_spool_dir(str(spool_dir))
        self._done: list[Completion] = []
        self._dirs: set[str] = set()  # subdirectories (relative) moved from/to since the flush
        self._done_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._listing = Listing.of(config, spool_dir)  # --manifest: queue completions
        self._prior = frozenset(journal.claims)  # claims a killed run left (keys of its uploads)
        # A file moved (or deleted) by its producer after its upload keeps its uploaded claim:
        # found again at another path by its inode, it is moved without a second upload.
        self._orphans: dict[Inode, Claim] = dict(orphans or {})
        self._recovered = frozenset(self._orphans)
        self._in_flight: dict[Inode, str] = {}  # inode -> relpath, claimed and not finished
        self._scanned_all = False
        # Files the first claimed batch holds when it is the only one (the scan ended within
        # it), else CLAIM_BATCH: a run of a few files starts only as many workers.
        self._first_batch: int | None = None

    # -- the phase --------------------------------------------------------------------------

    def run(self, candidates: Iterable[Candidate]) -> None:
        """Ship every candidate (blocking); returns when every started file is finished."""
        feed = ClaimFeed(self._claimed(candidates), self._claim_failed)

        def work() -> None:
            while not self.state.stopping:
                item = feed.take()
                if item is None:
                    return
                with self.state.shipping():
                    self._ship(*item)

        workers: list[threading.Thread] = []
        try:
            feed.start()
            feed.wait_for_first()  # its claims committed (or none will come)
            # Each Thread.start waits for its thread (~0.25 ms): 64 of them are ~10% of a
            # cron run of a few files.
            first = self._first_batch  # None: claiming ended before a batch
            wanted = max(1, min(self.config.concurrency, 0 if first is None else first))
            for i in range(wanted):
                worker = threading.Thread(target=work, name=f"ship-{i}", daemon=True)
                workers.append(worker)
                worker.start()
            for worker in workers:
                worker.join()
        finally:
            feed.close()
            self._flush()
        if self._scanned_all and not self.state.stopping:
            # A whole scan did not find them again: gone from new/ (or no longer eligible).
            self.journal.drop_claims(
                c.name for inode, c in self._orphans.items() if inode in self._recovered
            )

    def _claim_failed(self, exc: Exception) -> None:
        """E.g. the journal cannot be written: upload nothing more."""
        log.debug("claiming failed", exc_info=exc)
        self._stop_run(f"{self.spool_dir}: cannot claim files: {exc}")

    def _claimed(self, candidates: Iterable[Candidate]) -> Iterator[list[tuple[Candidate, Claim]]]:
        """Batches of files whose claims are committed (their keys durable)."""
        for batch in batched(candidates, CLAIM_BATCH):
            if self.state.stopping:
                return
            ready = self._claim(batch)
            if self._first_batch is None:  # a short batch is the last one (``batched``)
                self._first_batch = len(ready) if len(batch) < CLAIM_BATCH else CLAIM_BATCH
            yield ready
        self._scanned_all = True

    def _claim(self, batch: tuple[Candidate, ...]) -> list[tuple[Candidate, Claim]]:
        """Fix every file's key (reusing a journaled one) and commit new claims at once."""
        now = time.time()
        ready: list[tuple[Candidate, Claim]] = []
        fresh: list[Claim] = []
        for candidate in batch:
            st = candidate.st
            if self._moved_in_flight(candidate):  # the next run finds it (``_adopt``)
                log.debug("%s is in flight under the name it had", candidate.path)
                continue
            claim = self.journal.get(candidate.relpath)
            if claim is None and self._orphans:
                claim = self._adopt(candidate)
            if claim is None or not claim.is_for(st):
                try:
                    key = self._key_for(candidate, now)
                except FileError as exc:
                    if self.state.first_key_failure(candidate.relpath, st):
                        self._fail(candidate.path, None, "file", exc.detail())
                    else:  # a daemon's later cycle: reported once, nothing changed since
                        log.debug("%s: %s (reported before)", candidate.path, exc.detail())
                    continue
                claim = Claim(candidate.relpath, st.st_dev, st.st_ino, key)
                fresh.append(claim)
            with self._done_lock:
                self._in_flight[(st.st_dev, st.st_ino)] = candidate.relpath
            ready.append((candidate, claim))
        self.journal.add_claims(fresh)
        if fresh:
            crash_point("after_claim")
        return ready

    def _moved_in_flight(self, candidate: Candidate) -> bool:
        """The file is being uploaded under the name it had before its producer moved it
        here: claiming it again would upload it twice. (A second hard link, the old name
        still there, is a file of its own.)"""
        st = candidate.st
        with self._done_lock:
            other = self._in_flight.get((st.st_dev, st.st_ino))
        if other is None or other == candidate.relpath:
            return False
        try:
            there = os.lstat(self.new / other)
        except (FileNotFoundError, NotADirectoryError):
            return True
        return (there.st_dev, there.st_ino) != (st.st_dev, st.st_ino)

    def _adopt(self, candidate: Candidate) -> Claim | None:
        """The uploaded claim of this inode under the name it had (the producer moved the file
        after its upload): renamed to the file's path now, so that only the move is left."""
        st = candidate.st
        with self._done_lock:
            orphan = self._orphans.get((st.st_dev, st.st_ino))
        if orphan is None or (orphan.size, orphan.mtime_ns) != (st.st_size, st.st_mtime_ns):
            return None
        try:
            if orphan.is_for(os.lstat(self.new / orphan.name)):
                return None  # still there too: a second hard link, a file of its own
        except (FileNotFoundError, NotADirectoryError):
            pass
        with self._done_lock:
            del self._orphans[(st.st_dev, st.st_ino)]
        log.debug("%s was uploaded as %s before it moved", candidate.path, orphan.name)
        return self.journal.rename_claim(orphan.name, candidate.relpath)

    def _key_for(self, candidate: Candidate, now: float) -> str:
        return key_for(self.config, candidate, self._spool_token, now)

    # -- one file ---------------------------------------------------------------------------

    def _ship(self, candidate: Candidate, claim: Claim) -> None:
        uri = self.config.destination.uri_for(claim.key)
        try:
            if candidate.reldir:
                with self._source_dir(candidate) as here:
                    self._ship_from(here, candidate, claim, uri)
            else:  # directly in new/ (every file without --recursive): no descriptor to open
                self._ship_from(self._new_at, candidate, claim, uri)
        except Exception as exc:  # one broken file must never stop the others
            self._handle_failure(candidate.path, uri, exc)
        finally:
            with self._done_lock:
                self._in_flight.pop((candidate.st.st_dev, candidate.st.st_ino), None)

    @contextlib.contextmanager
    def _source_dir(self, candidate: Candidate) -> Iterator[At]:
        """The file's directory: ``new/`` by path, a subdirectory by a descriptor opened from
        ``new/`` without following a symlink (``spoolfs.open_beneath``)."""
        if not candidate.reldir:
            yield At(self.new)
            return
        try:
            fd = open_beneath(self.new, candidate.reldir)
        except OSError as exc:
            raise FileError(
                f"cannot enter {candidate.reldir}/ beneath new/ (symlinks are never followed)",
                path=candidate.path,
                cause=exc.strerror,
            ) from exc
        try:
            yield At(candidate.path.parent, fd)
        finally:
            os.close(fd)

    def _ship_from(self, here: At, candidate: Candidate, claim: Claim, uri: str) -> None:
        source: Source | None = None
        try:
            suffix = self.config.marker_suffix
            if candidate.st.st_nlink > 1:
                if self._finish_interrupted_move(here, candidate, claim):
                    return
                if suffix is not None and not has_marker(candidate.path, suffix):
                    self.journal.drop_claims([claim.name])  # a producer's link, not yet ready
                    return
            source = open_source(candidate.path, here)
            if Identity.of(source.st) != Identity.of(candidate.st) and not is_old_enough(
                source.st, self.config.hold_for * 60, time.time()
            ):
                return  # written to since the scan: not eligible any more
            result, seconds = self._upload(source, claim)
            self._check_unchanged(source, claim, result)
            if not candidate.reldir:
                self._move(source, here, self._completed_at, "", claim, result, uri, seconds)
                return
            with dir_beneath(self.completed, candidate.reldir, create=True) as there:
                self._move(source, here, there, candidate.reldir, claim, result, uri, seconds)
        finally:
            if source is not None:
                source.close()

    def _finish_interrupted_move(self, here: At, candidate: Candidate, claim: Claim) -> bool:
        """A killed run linked the file into ``completed/`` (its mirror directory) and died
        before unlinking it from ``new/`` (so before committing its completion): finish the
        move; with ``--manifest`` queue its entry (under the key the killed run's claim fixed)."""
        try:
            with dir_beneath(self.completed, candidate.reldir) as there:
                moved = self.fs.finish_move(here, candidate.name, there, self.config.marker_suffix)
        except (FileNotFoundError, NotADirectoryError):
            return False  # no mirror directory: no move was begun
        if moved is None:
            return False
        entry = None
        if self._listing is not None and claim.name in self._prior:
            entry = self._listing.recovered(claim, moved, candidate.st.st_mtime_ns)
        if entry is None:
            self.journal.drop_claims([claim.name])
        else:
            self.journal.list_recovered([entry])
        return True

    def _check_unchanged(self, source: Source, claim: Claim, result: UploadResult) -> None:
        state = source_state(source)
        if state == "unchanged":
            return
        if state == "moved":
            # The object is complete: if the producer moved the file within new/, the next run
            # finds it by its inode and only moves it (``_adopt``); no second object.
            self.journal.mark_uploaded(
                claim.name, source.size, source.st.st_mtime_ns, result.etag, result.checksum
            )
            with self._done_lock:
                self._orphans[(source.st.st_dev, source.st.st_ino)] = self.journal.claims[
                    claim.name
                ]
            raise ChangedDuringUploadError(
                "changed while uploading: moved or deleted before it reached completed/; its "
                "object is complete, and the next run moves it without a second upload if it "
                "is still in new/",
                path=source.path,
                hint=f"key {claim.key}",
            )
        raise ChangedDuringUploadError(
            "changed while uploading; left in new/ for the next run",
            path=source.path,
            hint=f"same key {claim.key}",
        )

    def _handle_failure(self, path: Path, uri: str, exc: Exception) -> None:
        """Report a failed file and decide whether the run goes on. The event carries the
        error's ``detail()``: the log line names the file and URI itself."""
        if isinstance(exc, ChangedDuringUploadError):
            self._fail(path, uri, "changed", exc.detail())
        elif isinstance(exc, FatalError):
            self._fail(path, uri, "fatal", exc.detail())
            self._stop_run(str(exc))
        elif isinstance(exc, RetryableError):
            self._fail(path, uri, "retryable", exc.detail())
            count = self.state.transient_failure()
            if count >= TRANSIENT_FAILURE_LIMIT:
                self._stop_run(f"S3 kept failing ({count} files in a row): {exc}")
        elif isinstance(exc, SpoolToolError):
            self._fail(path, uri, "file", exc.detail())
        elif isinstance(exc, OSError):
            self._fail(path, uri, "file", str(exc.strerror or exc))
        else:
            log.debug("internal error on %s", path, exc_info=exc)
            self._fail(path, uri, "file", f"internal error: {exc!r}")

    def _stop_run(self, reason: str) -> None:
        if self.state.request_stop(reason):
            self.bus.emit(RunStopped(reason))

    def _prepare(self, source: Source) -> tuple[Source, ObjectHeaders]:
        """The body to send (compressed into a temp file with --compress) and its headers.
        ``--preserve-mtime`` takes the time from the opened file's ``fstat`` (the identity
        verified unchanged after the upload), never from the compressed temp file."""
        content_type = guess_type(source.path.name)
        metadata: tuple[tuple[str, str], ...] = ()
        if self.config.s3.preserve_mtime:
            metadata = ((MTIME_KEY, rclone_mtime(source.st.st_mtime_ns)),)
        compression = self.config.s3.compress
        if compression is None or not wants_compression(source.path.name, compression):
            return source, ObjectHeaders(content_type=content_type, metadata=metadata)
        tmp_dir = self.config.state_dir(self.spool_dir) / "tmp"
        payload = compress_to_temp(source, compression, tmp_dir)
        return payload, ObjectHeaders(content_type, ENCODING[compression], metadata)

    def _upload(self, source: Source, claim: Claim) -> tuple[UploadResult, float | None]:
        """The upload's result and duration; None for a resumed file (the journal says a killed
        run completed its upload, unchanged since: only the move is left, nothing is sent)."""
        if (
            claim.state == "uploaded"
            and claim.size == source.st.st_size
            and claim.mtime_ns == source.st.st_mtime_ns
        ):
            return UploadResult(claim.key, source.size, claim.etag, claim.checksum), None
        started = time.monotonic()

        def record(upload_id: str | None) -> None:
            self.journal.set_upload_id(claim.name, upload_id)
            if upload_id is not None:
                crash_point("mid_upload")

        payload, headers = self._prepare(source)
        payload.on_sent = functools.partial(self._sent, source.path)
        try:
            result = self.destination.upload(payload, claim.key, record, headers)
        finally:
            if payload is not source:
                payload.close()
        seconds = time.monotonic() - started
        if source.size >= self.config.s3.multipart_threshold and unchanged_since(source):
            # Worth a transaction: after a crash the rerun only moves the file.
            self.journal.mark_uploaded(
                claim.name, source.size, source.st.st_mtime_ns, result.etag, result.checksum
            )
        crash_point("after_upload")
        return result, seconds

    def _move(
        self,
        source: Source,
        here: At,
        there: At,
        reldir: str,
        claim: Claim,
        result: UploadResult,
        uri: str,
        seconds: float | None,
    ) -> None:
        dst = self.fs.move(here, source.path.name, there, self.config.marker_suffix)
        with contextlib.suppress(OSError):
            # Retention (--delete-after) counts from completion, not from the producer's write.
            there.touch(dst.name)
        crash_point("after_move")
        self.state.success()
        completed_as = f"{reldir}/{dst.name}" if reldir else dst.name
        completion = Completion(
            claim.name, completed_as, claim.key, result.size, result.etag, result.checksum,
            source.st.st_mtime_ns, time.time_ns(),
        )  # fmt: skip
        with self._done_lock:
            self._done.append(completion)
            if reldir:
                self._dirs.add(reldir)
            due = len(self._done) >= FLUSH_EVERY
        resumed = seconds is None
        self.bus.emit(
            FileUploaded(source.path, uri, result.size, seconds or 0.0, resumed=resumed),
            FileMoved(source.path, dst),
        )
        if due:
            self._flush()

    def _flush(self) -> None:
        """Make the moves durable (directory fsync), then drop their claims in one commit."""
        with self._flush_lock:
            with self._done_lock:
                done, self._done = self._done, []
                dirs, self._dirs = self._dirs, set()
            if not done:
                return
            fsync_dir(self.new)
            fsync_dir(self.completed)
            for reldir in dirs:
                _fsync_beneath(self.new, reldir)
                _fsync_beneath(self.completed, reldir)
            bucket = None if self._listing is None else self._listing.bucket
            self.journal.complete(done, manifest_bucket=bucket)

    def _sent(self, path: Path, size: int) -> None:
        self.bus.emit(BytesSent(path, size))

    def _fail(self, path: Path, uri: str | None, kind: ErrorKind, message: str) -> None:
        self.bus.emit(FileFailed(path, uri, kind, message))


class ClaimFeed:
    """The workers' one shared stream of claimed files, claimed one batch ahead.

    A thread of its own advances the scan and commits the next batch of claims (one fsync)
    while the workers still take files from the current one, so no worker waits for a commit
    (measured: ~9% of the workers' wall time on W1 when a worker committed each batch itself).
    A batch reaches the workers only once its claims are committed, so every key is durable
    before the first byte of its file is sent; at most two batches are claimed and not yet
    taken (the current one and the next), and the next is claimed only once the workers took
    the one before it (backpressure on the scan).
    """

    def __init__(
        self,
        batches: Iterator[list[tuple[Candidate, Claim]]],
        on_error: Callable[[Exception], None],
    ) -> None:
        self._batches = batches
        self._on_error = on_error
        self._cond = threading.Condition()
        self._current: Iterator[tuple[Candidate, Claim]] = iter(())
        self._next: list[tuple[Candidate, Claim]] | None = None  # committed, not yet taken
        self._exhausted = False  # no batch will come any more
        self._closed = False  # the workers are gone
        self._thread = threading.Thread(target=self._claim_ahead, name="claim", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _claim_ahead(self) -> None:
        try:
            for batch in self._batches:
                with self._cond:
                    self._next = batch
                    self._cond.notify_all()
                    self._cond.wait_for(lambda: self._next is None or self._closed)
                    if self._closed:
                        return
        except Exception as exc:  # one sentence stops the run (``on_error``)
            self._on_error(exc)
        finally:
            with self._cond:
                self._exhausted = True
                self._cond.notify_all()

    def wait_for_first(self) -> None:
        """Until the first batch is committed, or claiming ended without one (bounded by the
        scan and one transaction, like every worker's first ``take``)."""
        with self._cond:
            self._cond.wait_for(lambda: self._next is not None or self._exhausted)

    def take(self) -> tuple[Candidate, Claim] | None:
        """The next claimed file; None when there is none left (or claiming failed)."""
        with self._cond:
            while True:
                item = next(self._current, None)
                if item is not None:
                    return item
                if self._next is not None:
                    self._current, self._next = iter(self._next), None
                    self._cond.notify_all()  # the claimer may claim the batch after it
                elif self._exhausted:
                    return None
                else:
                    self._cond.wait()

    def close(self) -> None:
        """The workers are done: let the claimer go (it claims nothing more) and wait for it."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread.ident is not None:
            self._thread.join()


def _fsync_beneath(root: Path, reldir: str) -> None:
    """fsync ``root/reldir`` (reached without following a symlink), unless it is gone: a
    producer may remove a directory of ``new/`` it emptied; nothing is left to make durable."""
    try:
        fd = open_beneath(root, reldir)
    except (FileNotFoundError, NotADirectoryError):
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def batched(items: Iterable[Candidate], size: int) -> Iterator[tuple[Candidate, ...]]:
    """``itertools.batched`` (Python 3.12+) for 3.11."""
    iterator = iter(items)
    while chunk := tuple(itertools.islice(iterator, size)):
        yield chunk


def recover_killed_run(
    journal: Journal, destination: Destination, new: Path, listing: Listing | None = None
) -> dict[Inode, Claim]:
    """Before claiming anything: abort multipart uploads a killed run left open, and drop
    claims whose file is gone, moved or replaced by another inode. With ``listing``
    (``--manifest``), a file whose claim is left because a killed run moved it to
    ``completed/`` before committing its completion is queued for the manifest. An *uploaded*
    claim whose file is gone otherwise is kept and returned by inode (an orphan): its file may
    have moved within ``new/`` after its upload, and ``SpoolUploader`` adopts it where the
    scan finds it (or forgets it after a whole scan did not)."""
    stale: list[str] = []
    gone: list[Claim] = []
    for name, claim in list(journal.claims.items()):
        if claim.upload_id is not None:
            try:
                destination.abort_upload(claim.key, claim.upload_id)
            except SpoolToolError as exc:
                log.warning("could not abort multipart upload of %s: %s", claim.key, exc)
                if isinstance(exc, FatalError):
                    raise
                continue  # keep the claim and its UploadId: the next run tries again
            journal.set_upload_id(name, None)
        try:
            st = os.lstat(new / name)
        except (FileNotFoundError, NotADirectoryError):
            gone.append(claim)
            continue
        if not claim.is_for(st):
            stale.append(name)
    if listing is not None:
        journal.list_recovered(listing.find_moved(gone))  # their claims are dropped
    gone = [claim for claim in gone if claim.name in journal.claims]
    orphans = {(c.dev, c.ino): c for c in gone if c.state == "uploaded"}
    journal.drop_claims([*stale, *(c.name for c in gone if c.state != "uploaded")])
    return orphans


def key_for(config: Config, candidate: Candidate, spool_token: str, now: float) -> str:
    """Render and validate the object key a file gets at its first claim (``FileError``)."""
    st = candidate.st
    facts = FileFacts(
        relpath=candidate.relpath,
        name=candidate.name,
        spool_dir=spool_token,
        mtime=whole_seconds(st.st_mtime_ns),
        ctime=math.floor(creation_time(st)),
        now=now,
        hostname=config.hostname,
    )
    rendered = config.template.render(facts)
    if wants_compression(candidate.name, config.s3.compress):
        assert config.s3.compress is not None
        rendered += SUFFIX[config.s3.compress]
    try:
        return full_key(config.destination.prefix, rendered)
    except FileError as exc:
        raise FileError(exc.detail(), path=candidate.path) from exc


_MIME_READ = threading.Event()  # the system's table is read (once, under the lock)
_MIME_LOCK = threading.Lock()


@functools.lru_cache(maxsize=256)
def _type_of_suffix(suffix: str) -> str | None:
    if not _MIME_READ.is_set():
        # ``mimetypes``' own lazy init races: 64 workers' first files each read
        # /etc/mime.types (8 reads measured in a W1 run). Once, under a lock.
        with _MIME_LOCK:
            if not _MIME_READ.is_set():
                mimetypes.init()
                _MIME_READ.set()
    return mimetypes.guess_type(f"x{suffix}", strict=False)[0]


def guess_type(name: str) -> str | None:
    """Content-Type from a file name's extension (cached: called once per file)."""
    _, dot, ext = name.rpartition(".")
    return _type_of_suffix(f"{dot}{ext}".lower()) if dot else None
