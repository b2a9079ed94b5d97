"""One run: the upload phase over every spool, then the cleanup phase. The library entry point."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from spool_tool.cleanup import delete_expired, delete_expired_verified
from spool_tool.destinations import make_destination
from spool_tool.errors import FatalError, FileError
from spool_tool.events import (
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
from spool_tool.scan import iter_eligible
from spool_tool.spoolfs import SpoolFS

if TYPE_CHECKING:
    from pathlib import Path

    from spool_tool.config import Config
    from spool_tool.destinations.base import Destination

log = logging.getLogger(__name__)


DestinationFactory = Callable[["Config"], "Destination"]


def run(
    config: Config,
    listeners: list[Listener] | None = None,
    *,
    destination_factory: DestinationFactory = make_destination,
) -> Summary:
    """Run both phases once; return the summary (``summary.ok`` decides exit 0 or 1).

    ``destination_factory`` lets tests wrap the real destination (fault hooks on its client).
    """
    bus = EventBus(listeners)
    control = RunControl()
    started = time.monotonic()
    asyncio.run(_run(config, bus, control, destination_factory))
    bus.summary.seconds = time.monotonic() - started
    bus.summary.signal = control.signal
    bus.emit(RunFinished(bus.summary))
    return bus.summary


async def _run(
    config: Config, bus: EventBus, control: RunControl, destination_factory: DestinationFactory
) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _on_signal, signum, bus, control)
    destination: Destination | None = None
    wants_s3 = config.upload or (config.cleanup and config.verify_before_delete)
    if wants_s3 and not config.dry_run:
        destination = destination_factory(config)
        control.on_signal = destination.cancel
    try:
        if config.upload:
            await _upload_phase(config, bus, control, destination)
        if config.cleanup and control.signal is None:
            await _cleanup_phase(config, bus, control, destination)
    finally:
        if destination is not None:
            await destination.close()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def _on_signal(signum: int, bus: EventBus, control: RunControl) -> None:
    name = signal.Signals(signum).name
    if control.signal is not None:
        # A second signal: leave now. The journal holds any open multipart UploadId, and the
        # next run aborts it; files not yet moved stay in new/ with their keys fixed.
        bus.emit(RunStopped(f"received {name} again: exiting at once"))
        os._exit(128 + signum)
    reason = f"received {name}: finishing uploads in flight, claiming no more"
    control.stop(reason)
    control.signal = signum
    bus.emit(RunStopped(reason))
    if control.on_signal is not None:
        control.on_signal()


async def _upload_phase(
    config: Config, bus: EventBus, control: RunControl, destination: Destination | None
) -> None:
    preflight_done = False
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
            preflight_done = await _upload_spool(
                spool, journal, config, bus, control, destination, preflight_done=preflight_done
            )


def _open_journal(spool: Path, bus: EventBus) -> Journal | None:
    """Take the spool's lock; report (and return None) when it is busy or unusable."""
    try:
        return Journal.open(spool)
    except SpoolBusyError:
        bus.emit(SpoolSkipped(spool, f"{spool}: held by another spool_tool process", False))
    except FatalError as exc:
        bus.emit(SpoolSkipped(spool, str(exc), True))
    return None


async def _upload_spool(
    spool: Path,
    journal: Journal,
    config: Config,
    bus: EventBus,
    control: RunControl,
    destination: Destination,
    *,
    preflight_done: bool,
) -> bool:
    """Upload one spool; returns whether the destination's pre-flight check has run."""
    fs = SpoolFS()
    fs.ensure_dir(spool / "completed")
    candidates = iter_eligible(
        spool / "new",
        hold_for_seconds=config.hold_for * 60,
        now=time.time(),
        on_skip=lambda path, why, warn: bus.emit(EntrySkipped(path, why, warn)),
    )
    first = next(candidates, None)
    if first is None and not journal.claims:
        return preflight_done
    try:
        if not preflight_done:
            await destination.preflight()
        await recover(journal, destination, spool / "new", bus)
    except FatalError as exc:
        control.stop(str(exc))
        bus.emit(RunStopped(str(exc)))
        return True
    if first is not None:
        uploader = SpoolUploader(spool, journal, destination, config, bus, control, fs)
        await uploader.run(itertools.chain([first], candidates))
    return True


def _dry_run_uploads(config: Config, spool: Path, bus: EventBus) -> None:
    journal = Journal.read_only(spool)
    now = time.time()
    token = normalise_spool_dir(str(spool))
    for candidate in iter_eligible(
        spool / "new",
        hold_for_seconds=config.hold_for * 60,
        now=now,
        on_skip=lambda path, why, warn: bus.emit(EntrySkipped(path, why, warn)),
    ):
        claim = journal.get(candidate.name) if journal else None
        if claim is not None and (claim.dev, claim.ino) == (
            candidate.st.st_dev,
            candidate.st.st_ino,
        ):
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


async def _cleanup_phase(
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
            if config.verify_before_delete and journal is not None and destination is not None:
                await delete_expired_verified(
                    completed,
                    delete_after_seconds=config.delete_after * 60,
                    now=time.time(),
                    fs=fs,
                    bus=bus,
                    journal=journal,
                    head=destination.head,
                )
            else:
                delete_expired(
                    completed,
                    delete_after_seconds=config.delete_after * 60,
                    now=time.time(),
                    fs=fs,
                    bus=bus,
                    journal=journal,
                )
        finally:
            if journal is not None:
                journal.close()
