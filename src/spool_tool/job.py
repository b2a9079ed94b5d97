"""A job: one configured set of spools and their destination, and its two phases.

The upload phase of a spool runs named steps in order: take the spool's lock, scan, *pre-flight*
(is the destination usable at all?), *recover* what a killed run left (open multipart uploads,
stale claims), then ship (``pipeline.SpoolUploader``). A dry run only lists what it would do.
The cleanup phase deletes expired files in ``completed/``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from spool_tool.backlog import measure_backlog
from spool_tool.cleanup import delete_expired
from spool_tool.config import Config
from spool_tool.diskspace import delete_for_space, free_space
from spool_tool.errors import FatalError, FileError
from spool_tool.events import (
    DiskPressure,
    EntrySkipped,
    EventBus,
    FilesFound,
    FilesystemMeasured,
    RunStopped,
    SpoolSkipped,
    SpoolStarted,
    WouldUpload,
    WouldWriteManifest,
)
from spool_tool.journal import Journal, SpoolBusyError
from spool_tool.keys import normalise_spool_dir
from spool_tool.manifest import Listing, ManifestWriter, example_uri
from spool_tool.pipeline import SpoolUploader, key_for, recover_killed_run
from spool_tool.prune import prune_empty_dirs
from spool_tool.scan import Candidate, iter_eligible
from spool_tool.spoolfs import COMPLETED, NEW, SpoolFS

if TYPE_CHECKING:
    from pathlib import Path

    from spool_tool.cleanup import Head
    from spool_tool.destinations.base import Destination
    from spool_tool.runstate import RunState

DestinationFactory = Callable[["Config"], "Destination"]


@dataclass
class Job:
    """One configured job (a ``[[spool]]`` of the config file, or the command line)."""

    config: Config
    destination: Destination | None = None
    error: str | None = None  # the destination could not be set up (no credentials...)
    # Spools whose lock or journal could not be taken this cycle (busy, damaged): reported once
    _skipped: set[Path] = field(default_factory=set, init=False, repr=False)

    def open(self, factory: DestinationFactory) -> None:
        """Set up the destination if a phase needs S3 (a dry run never does)."""
        config = self.config
        wants_s3 = config.upload or (config.cleanup and config.verify_before_delete)
        if wants_s3 and not config.dry_run:
            try:
                self.destination = factory(config)
            except FatalError as exc:
                self.error = f"{config.destination}: {exc}"

    def close(self) -> None:
        if self.destination is not None:
            self.destination.close()

    def cancel(self) -> None:
        """A signal: abort multipart uploads between parts."""
        if self.destination is not None:
            self.destination.cancel()

    # -- upload phase -------------------------------------------------------------------------

    def upload(self, bus: EventBus, state: RunState) -> None:
        self._skipped.clear()
        for spool in self.config.spool_dirs:
            if state.stopping:
                return
            new = spool / NEW
            if not new.is_dir():
                bus.emit(
                    SpoolSkipped(spool, f"{spool}: no such spool directory ({new} missing)", True)
                )
                continue
            bus.emit(SpoolStarted(spool, "upload"))
            if self.config.dry_run:
                _list_would_upload(self.config, spool, bus)
                continue
            journal = self._lock(spool, bus)
            if journal is None:
                continue
            assert self.destination is not None  # set up by open() for every live upload
            try:
                with journal:
                    _upload_spool(spool, journal, self.config, bus, state, self.destination)
                    if self.config.prune_empty_dirs and not state.stopping:
                        _prune(spool, self.config)
            except FatalError as exc:  # the journal failed mid-phase (damaged, disk full...)
                if state.request_stop(str(exc)):
                    bus.emit(RunStopped(str(exc)))

    def _lock(self, spool: Path, bus: EventBus) -> Journal | None:
        """Take the spool's lock; report (and return None) when it is busy or unusable. Either
        is reported once per cycle (its cleanup is skipped without a second line)."""
        if spool in self._skipped:
            return None
        try:
            return Journal.open(spool, self.config.state_dir(spool))
        except SpoolBusyError:
            bus.emit(SpoolSkipped(spool, f"{spool}: held by another spool_tool process", False))
        except FatalError as exc:  # damaged, unwritable, not a database...
            bus.emit(SpoolSkipped(spool, str(exc), True))
        self._skipped.add(spool)
        return None

    # -- cleanup phase ------------------------------------------------------------------------

    def cleanup(self, bus: EventBus, state: RunState) -> None:
        config = self.config
        for spool in config.spool_dirs:
            if state.signal is not None:
                return
            completed = spool / COMPLETED
            if not completed.is_dir():
                continue
            bus.emit(SpoolStarted(spool, "cleanup"))
            journal: Journal | None = None
            if not config.dry_run:
                journal = self._lock(spool, bus)
                if journal is None:
                    continue
            checker = self.destination if config.verify_before_delete else None
            try:
                _make_room(spool, config, bus, journal, checker.head if checker else None)
                delete_expired(
                    completed,
                    delete_after_seconds=config.delete_after * 60,
                    now=time.time(),
                    fs=SpoolFS(dry_run=config.dry_run),
                    bus=bus,
                    journal=journal,
                    head=checker.head if checker is not None else None,
                    options=config.scan_options,
                )
            except FatalError as exc:  # the journal failed (damaged, disk full...)
                if state.request_stop(str(exc)):
                    bus.emit(RunStopped(str(exc)))
            finally:
                if journal is not None:
                    journal.close()
        self._skipped.clear()


def _make_room(
    spool: Path, config: Config, bus: EventBus, journal: Journal | None, head: Head | None
) -> None:
    """``--min-free``: delete the oldest completed files while the disk is short, then report
    the filesystem (gauge) and, when ``new/`` alone keeps it short, the pressure (warning)."""
    if config.min_free is None:
        try:
            space = free_space(spool / COMPLETED)
        except OSError:
            return  # cleanup reports an unreadable completed/
        bus.emit(FilesystemMeasured(spool, space.free, space.total))
        return
    report = delete_for_space(
        spool / COMPLETED,
        min_free=config.min_free,
        fs=SpoolFS(dry_run=config.dry_run),
        bus=bus,
        journal=journal,
        head=head,
        options=config.scan_options,
    )
    if report is None:
        return
    free, total, mark = report.space.free, report.space.total, report.watermark
    bus.emit(FilesystemMeasured(spool, free, total, mark, report.deleted))
    if report.short:
        backlog = measure_backlog(
            spool, hold_for_seconds=0, now=time.time(), options=config.scan_options
        )
        waiting = backlog.bytes_waiting
        bus.emit(DiskPressure(spool, free, total, mark, waiting))


def _upload_spool(
    spool: Path,
    journal: Journal,
    config: Config,
    bus: EventBus,
    state: RunState,
    destination: Destination,
) -> None:
    """One spool's upload phase, with the spool's lock held: scan, pre-flight, recover, ship."""
    fs = SpoolFS()
    if not _ensure_completed(spool, fs, bus):
        return
    candidates = _eligible(config, spool, bus, time.time())
    if candidates is None:
        return
    first = next(candidates, None)
    listing = Listing.of(config, spool)
    unlisted = listing is not None and journal.unlisted() > 0  # a killed or failed manifest
    if first is None and not journal.claims and not unlisted:
        return
    try:
        destination.preflight()  # once per destination: a missing bucket stops here
        orphans = recover_killed_run(journal, destination, spool / NEW, listing)
    except FatalError as exc:
        if state.request_stop(str(exc)):
            bus.emit(RunStopped(str(exc)))
        return
    if first is None:  # a whole scan found nothing: no orphan can be found again
        journal.drop_claims(claim.name for claim in orphans.values())
    else:
        uploader = SpoolUploader(spool, journal, destination, config, bus, state, fs, orphans)
        uploader.run(itertools.chain([first], candidates))
    if listing is not None and not state.stopping:  # a stopped run's entries: the next run's
        ManifestWriter(spool, journal, destination, config, bus).write()


def _ensure_completed(spool: Path, fs: SpoolFS, bus: EventBus) -> bool:
    """Create ``completed/`` if missing; False (reported: this spool failed, the others go on)
    when it cannot be (a file or a dangling symlink in its place, no permission...)."""
    completed = spool / COMPLETED
    try:
        fs.ensure_dir(completed)
    except OSError as exc:
        why = "not a directory" if isinstance(exc, FileExistsError) else exc.strerror
        bus.emit(SpoolSkipped(spool, f"{completed}: cannot use the directory: {why}", True))
        return False
    return True


def _prune(spool: Path, config: Config) -> None:
    """``--prune-empty-dirs``, after the upload phase (the lock still held)."""
    older_than = time.time() - config.hold_for * 60
    prune_empty_dirs(spool / NEW, older_than=older_than, fs=SpoolFS(), options=config.scan_options)


def _eligible(config: Config, spool: Path, bus: EventBus, now: float) -> Iterator[Candidate] | None:
    """The spool's eligible files; skipped entries and each scan window are reported. None
    (reported: this spool failed, the others go on) when ``new/`` cannot be read."""
    new = spool / NEW
    try:
        return iter_eligible(
            new,
            hold_for_seconds=config.hold_for * 60,
            now=now,
            on_skip=lambda path, why, warn: bus.emit(EntrySkipped(path, why, warn)),
            on_window=lambda files, size, last: bus.emit(FilesFound(spool, files, size, last)),
            options=config.scan_options,
        )
    except OSError as exc:
        bus.emit(SpoolSkipped(spool, f"{new}: cannot read the directory: {exc.strerror}", True))
        return None


def _list_would_upload(config: Config, spool: Path, bus: EventBus) -> None:
    """The dry run of the upload phase: each file and the URI it would get (the journaled key
    for a file a killed run had claimed). Creates and changes nothing."""
    now = time.time()
    candidates = _eligible(config, spool, bus, now)
    if candidates is None:
        return
    try:
        journal = Journal.read_only(spool, config.state_dir(spool))
    except FatalError as exc:  # a damaged journal
        bus.emit(SpoolSkipped(spool, str(exc), True))
        return
    token = normalise_spool_dir(str(spool))
    listed = 0 if journal is None else journal.unlisted()
    try:
        for candidate in candidates:
            claim = journal.get(candidate.relpath) if journal else None
            if claim is not None and claim.is_for(candidate.st):
                key = claim.key
            else:
                try:
                    key = key_for(config, candidate, token, now)
                except FileError as exc:
                    # the line names the file: the sentence without its subject
                    bus.emit(
                        EntrySkipped(candidate.path, f"would fail: {exc.detail()}", warning=True)
                    )
                    continue
            bus.emit(WouldUpload(candidate.path, config.destination.uri_for(key)))
            listed += 1
        if listed and Listing.of(config, spool) is not None:
            bus.emit(WouldWriteManifest(spool, example_uri(config, spool), listed))
    finally:
        if journal is not None:
            journal.close()
