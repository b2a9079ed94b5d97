"""One run: the upload phase over every spool, then the cleanup phase. The library entry point."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Self

from spool_tool.backlog import measure_backlog
from spool_tool.cleanup import delete_expired
from spool_tool.config import Config
from spool_tool.destinations import make_destination
from spool_tool.errors import FatalError, FileError
from spool_tool.events import (
    BacklogMeasured,
    EntrySkipped,
    EventBus,
    Listener,
    RunFinished,
    RunStopped,
    SpoolSkipped,
    SpoolStarted,
    Summary,
    WouldUpload,
)
from spool_tool.journal import Journal, SpoolBusyError
from spool_tool.keys import (
    normalise_spool_dir,
)
from spool_tool.pipeline import RunControl, SpoolUploader, key_for, recover
from spool_tool.scan import Candidate, iter_eligible
from spool_tool.spoolfs import SpoolFS

if TYPE_CHECKING:
    from pathlib import Path

    from spool_tool.destinations.base import Destination

log = logging.getLogger(__name__)


DestinationFactory = Callable[["Config"], "Destination"]


@dataclass
class Spooler:
    """One configured job (a ``[[spool]]`` of the config file, or the command line)."""

    config: Config
    destination: Destination | None = None
    error: str | None = None  # the destination could not be set up (no credentials...)


class Runner:
    """Runs cycles (upload phase, then cleanup) over every job; owns destinations and signals.

    A one-shot run is one cycle; ``--watch`` runs many (``spool_tool.watch``).
    """

    def __init__(
        self,
        configs: Sequence[Config],
        bus: EventBus,
        *,
        destination_factory: DestinationFactory = make_destination,
        measure_backlog: bool = False,
    ) -> None:
        self.spoolers = [Spooler(c) for c in configs]
        self.bus = bus
        self.destination_factory = destination_factory
        self.measure_backlog = measure_backlog
        self.signal: int | None = None
        self.control = RunControl()
        self.stopping = asyncio.Event()

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)
        for spooler in self.spoolers:
            config = spooler.config
            wants_s3 = config.upload or (config.cleanup and config.verify_before_delete)
            if wants_s3 and not config.dry_run:
                try:
                    spooler.destination = self.destination_factory(config)
                except FatalError as exc:
                    spooler.error = f"{config.destination}: {exc}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        loop = asyncio.get_running_loop()
        for spooler in self.spoolers:
            if spooler.destination is not None:
                spooler.destination.close()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)

    def is_stopping(self) -> bool:
        return self.signal is not None

    def _on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self.signal is not None:
            # A second signal: leave now. The journal holds any open multipart UploadId, and
            # the next run aborts it; files not yet moved stay in new/ with their keys fixed.
            self.bus.emit(RunStopped(f"received {name} again: exiting at once"))
            os._exit(128 + signum)
        self.signal = signum
        self.control.signal = signum
        reason = f"received {name}: finishing uploads in flight, claiming no more"
        self.control.stop(reason)
        self.bus.emit(RunStopped(reason))
        self.stopping.set()
        for spooler in self.spoolers:
            if spooler.destination is not None:
                spooler.destination.cancel()

    async def cycle(self, *, cleanup: bool = True) -> RunControl:
        """One pass: upload phase over every job, then (if ``cleanup``) the cleanup phase.

        The work blocks, so it runs in a thread; this loop stays free to take signals."""
        self.control = RunControl(signal=self.signal)
        if self.signal is not None:
            self.control.stop("stopping")
        await asyncio.to_thread(self._cycle, cleanup=cleanup)
        return self.control

    def _cycle(self, *, cleanup: bool) -> None:
        for spooler in self.spoolers:
            if spooler.error is not None:
                if self.control.stop(spooler.error):
                    self.bus.emit(RunStopped(spooler.error))
                continue
            if spooler.config.upload:
                _upload_phase(spooler.config, self.bus, self.control, spooler.destination)
        if cleanup:
            for spooler in self.spoolers:
                if spooler.config.cleanup and self.signal is None and spooler.error is None:
                    _cleanup_phase(spooler.config, self.bus, self.control, spooler.destination)
        if self.measure_backlog:
            self._emit_backlog()

    def _emit_backlog(self) -> None:
        now = time.time()
        for spooler in self.spoolers:
            for spool in spooler.config.spool_dirs:
                backlog = measure_backlog(
                    spool, hold_for_seconds=spooler.config.hold_for * 60, now=now
                )
                self.bus.emit(BacklogMeasured(backlog))


def run(
    configs: Config | Sequence[Config],
    listeners: list[Listener] | None = None,
    *,
    destination_factory: DestinationFactory = make_destination,
    measure_backlog: bool = False,
) -> Summary:
    """Run both phases once over every job; return the summary (``summary.ok``: exit 0 or 1).

    ``destination_factory`` lets tests wrap the real destination (fault hooks on its client).
    """
    jobs = [configs] if isinstance(configs, Config) else list(configs)
    bus = EventBus(listeners)
    started = time.monotonic()

    async def once() -> int | None:
        async with Runner(
            jobs, bus, destination_factory=destination_factory, measure_backlog=measure_backlog
        ) as runner:
            await runner.cycle()
            return runner.signal

    signum = asyncio.run(once())
    bus.summary.seconds = time.monotonic() - started
    bus.summary.signal = signum
    bus.emit(RunFinished(bus.summary))
    return bus.summary


def _upload_phase(
    config: Config, bus: EventBus, control: RunControl, destination: Destination | None
) -> None:
    for spool in config.spool_dirs:
        if control.stop_reason:
            return
        new = spool / "new"
        if not new.is_dir():
            bus.emit(SpoolSkipped(spool, f"{spool}: no such spool directory ({new} missing)", True))
            continue
        bus.emit(SpoolStarted(spool, "upload"))
        if destination is None:
            _dry_run_uploads(config, spool, bus)
            continue
        journal = _open_journal(spool, bus)
        if journal is None:
            continue
        with journal:
            _upload_spool(spool, journal, config, bus, control, destination)


def _open_journal(spool: Path, bus: EventBus) -> Journal | None:
    """Take the spool's lock; report (and return None) when it is busy or unusable."""
    try:
        return Journal.open(spool)
    except SpoolBusyError:
        bus.emit(SpoolSkipped(spool, f"{spool}: held by another spool_tool process", False))
    except FatalError as exc:
        bus.emit(SpoolSkipped(spool, str(exc), True))
    return None


def _upload_spool(
    spool: Path,
    journal: Journal,
    config: Config,
    bus: EventBus,
    control: RunControl,
    destination: Destination,
) -> None:
    """Upload one spool: pre-flight (once per destination), recover, ship."""
    fs = SpoolFS()
    fs.ensure_dir(spool / "completed")
    candidates = _eligible(config, spool, bus, time.time())
    first = next(candidates, None)
    if first is None and not journal.claims:
        return
    try:
        destination.preflight()
        recover(journal, destination, spool / "new")
    except FatalError as exc:
        control.stop(str(exc))
        bus.emit(RunStopped(str(exc)))
        return
    if first is not None:
        uploader = SpoolUploader(spool, journal, destination, config, bus, control, fs)
        uploader.run(itertools.chain([first], candidates))


def _eligible(config: Config, spool: Path, bus: EventBus, now: float) -> Iterator[Candidate]:
    """The spool's eligible files; skipped entries are reported as events."""
    return iter_eligible(
        spool / "new",
        hold_for_seconds=config.hold_for * 60,
        now=now,
        on_skip=lambda path, why, warn: bus.emit(EntrySkipped(path, why, warn)),
    )


def _dry_run_uploads(config: Config, spool: Path, bus: EventBus) -> None:
    journal = Journal.read_only(spool)
    now = time.time()
    token = normalise_spool_dir(str(spool))
    for candidate in _eligible(config, spool, bus, now):
        claim = journal.get(candidate.name) if journal else None
        if claim is not None and claim.is_for(candidate.st):
            key = claim.key
        else:
            try:
                key = key_for(config, candidate, token, now)
            except FileError as exc:
                bus.emit(EntrySkipped(candidate.path, f"would fail: {exc}", warning=True))
                continue
        bus.emit(WouldUpload(candidate.path, config.destination.uri_for(key)))
    if journal is not None:
        journal.close()


def _cleanup_phase(
    config: Config, bus: EventBus, control: RunControl, destination: Destination | None
) -> None:
    for spool in config.spool_dirs:
        if control.signal is not None:
            return
        completed = spool / "completed"
        if not completed.is_dir():
            continue
        bus.emit(SpoolStarted(spool, "cleanup"))
        fs = SpoolFS(dry_run=config.dry_run)
        journal: Journal | None = None
        if not config.dry_run:
            journal = _open_journal(spool, bus)
            if journal is None:
                continue
        try:
            wanted = config.verify_before_delete
            head = destination.head if wanted and destination is not None else None
            delete_expired(
                completed,
                delete_after_seconds=config.delete_after * 60,
                now=time.time(),
                fs=fs,
                bus=bus,
                journal=journal,
                head=head,
            )
        finally:
            if journal is not None:
                journal.close()
