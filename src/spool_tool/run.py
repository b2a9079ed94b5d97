"""A run: cycles of the upload phase over every job, then the cleanup phase; signals.

``run()`` is the library entry point (one cycle); ``--watch`` runs many (``spool_tool.watch``).

Stopping. The first SIGTERM or SIGINT stops claiming files and lets the uploads in flight
finish for up to ``STOP_GRACE_SECONDS`` (multipart uploads are aborted between parts); when the
grace period runs out (or after ``IDLE_GRACE_SECONDS`` with no upload in flight, when the
cycle waits on S3 for something else), or on a second signal, the process leaves at once.
That is safe: every claimed file keeps its key in the journal, and the next run aborts any
multipart upload left open and uploads the unfinished files again to the same keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from typing import TYPE_CHECKING, Self

from spool_tool.backlog import measure_backlog
from spool_tool.bwlimit import BandwidthLimiter
from spool_tool.config import Config
from spool_tool.destinations import make_destination
from spool_tool.destinations.gated import GatedRequests
from spool_tool.events import (
    BacklogMeasured,
    EventBus,
    ExitingNow,
    Listener,
    RunFinished,
    RunStopped,
    Summary,
    ThrottleReport,
)
from spool_tool.job import DestinationFactory, Job
from spool_tool.observe.logs import flush_all
from spool_tool.runstate import RunState

if TYPE_CHECKING:
    from collections.abc import Sequence

STOP_GRACE_SECONDS = 30.0
IDLE_GRACE_SECONDS = 2.0  # after a signal, with no upload in flight, wait no longer than this
_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Runner:
    """Runs cycles over every job; owns the jobs' destinations, the run state and the signals.

    ``daemon``: a signal is the normal way to end (logged as such; see ``watch``).
    """

    def __init__(
        self,
        configs: Sequence[Config],
        listeners: Sequence[Listener] = (),
        *,
        destination_factory: DestinationFactory = make_destination,
        measure_backlog: bool = False,
        stop_grace: float | None = None,
        daemon: bool = False,
    ) -> None:
        self.jobs = [Job(c) for c in configs]
        dry_run = bool(configs) and all(c.dry_run for c in configs)
        self.state = RunState("dry_run" if dry_run else "upload")
        self.bus = EventBus([self.state, *listeners])  # counted before anyone reports
        self.destination_factory = destination_factory
        self.measure_backlog = measure_backlog
        self.stop_grace = STOP_GRACE_SECONDS if stop_grace is None else stop_grace
        self.daemon = daemon
        self.stopping = asyncio.Event()  # wakes a daemon waiting between cycles
        self._in_cycle = False
        self._grace: asyncio.Future[None] | None = None

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        for signum in _SIGNALS:
            loop.add_signal_handler(signum, self._on_signal, signum)
        # --bwlimit is a whole-run option: one token bucket for every job's destination.
        rate = next((c.s3.bwlimit for c in (j.config for j in self.jobs) if c.s3.bwlimit), None)
        limiter = BandwidthLimiter(rate) if rate is not None else None
        for job in self.jobs:
            job.open(self.destination_factory)
            requests = _gated(job)
            if requests is not None:
                requests.gate.on_change = self.bus.emit  # throttling started / ended
                requests.limiter = limiter
        return self

    async def __aexit__(self, *exc: object) -> None:
        loop = asyncio.get_running_loop()
        for job in self.jobs:
            job.close()
        for signum in _SIGNALS:
            loop.remove_signal_handler(signum)
            if self.state.signal is not None:
                # Stopping already: a second signal while the process winds down (closing,
                # interpreter shutdown) still means "exit at once", never a traceback.
                signal.signal(signum, _exit_at_once)

    # -- signals ------------------------------------------------------------------------------

    def _on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self.state.signal is not None:
            self._exit_now(f"received {name} again: exiting at once", 128 + signum)
            return
        reason = f"received {name}"
        if self._in_cycle:
            reason += (
                f": finishing the uploads in flight (for up to {self.stop_grace:g} s), "
                "claiming no more"
            )
        self.state.request_stop(reason, signum)
        self.bus.emit(RunStopped(reason, signum, normal=self.daemon))
        self.stopping.set()
        for job in self.jobs:
            job.cancel()
        if self._in_cycle:
            self._grace = asyncio.ensure_future(self._leave_after_grace(signum))

    async def _leave_after_grace(self, signum: int) -> None:
        """Leave at once if the cycle has not ended when the uploads in flight had
        ``stop_grace`` seconds, or when none is in flight for ``IDLE_GRACE_SECONDS`` (the
        cycle waits on something else: a pre-flight, an abort, a HEAD)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.stop_grace
        idle_since: float | None = None
        while True:
            await asyncio.sleep(0.05)
            now = loop.time()
            idle_since = None if self.state.in_flight else idle_since or now
            if now >= deadline:
                reason = (
                    f"the uploads in flight did not finish within {self.stop_grace:g} s: "
                    "abandoned (the next run uploads them again, to the same keys)"
                )
                break
            if idle_since is not None and now - idle_since >= IDLE_GRACE_SECONDS:
                reason = "no upload in flight, but S3 has not answered: left the request"
                break
        self._exit_now(reason, 0 if self.daemon else 128 + signum)

    def _exit_now(self, reason: str, status: int) -> None:
        # Listeners restore the terminal and flush; nothing else is waited for. The journal
        # holds every claim and open UploadId: the next run resumes or aborts them.
        self.bus.emit(ExitingNow(reason))
        flush_all()
        os._exit(status)

    # -- cycles -------------------------------------------------------------------------------

    async def cycle(self, *, cleanup: bool = True) -> Summary:
        """One pass: upload phase over every job, then (if ``cleanup``) the cleanup phase;
        returns what it did. The work blocks, so it runs in a thread; this loop stays free to
        take signals."""
        self.state.begin_cycle()
        self._in_cycle = True
        try:
            await asyncio.to_thread(self._cycle, cleanup=cleanup)
        finally:
            self._in_cycle = False
            if self._grace is not None:
                self._grace.cancel()
                self._grace = None
        return self.state.end_cycle()

    def _cycle(self, *, cleanup: bool) -> None:
        for job in self.jobs:
            if job.error is not None:
                if self.state.request_stop(job.error):
                    self.bus.emit(RunStopped(job.error))
                continue
            if job.config.upload:
                job.upload(self.bus, self.state)
        if cleanup:
            for job in self.jobs:
                if job.config.cleanup and self.state.signal is None and job.error is None:
                    job.cleanup(self.bus, self.state)
        self._report_throttling()
        if self.measure_backlog:
            self._emit_backlog()

    def _report_throttling(self) -> None:
        """Each S3 destination's throttled requests this cycle and its limit now. A one-shot
        run ends an open throttling episode here; a daemon's ends after its quiet period."""
        for job in self.jobs:
            requests = _gated(job)
            if requests is None:
                continue
            if not self.daemon:
                requests.gate.finish()
            self.bus.emit(ThrottleReport(*requests.report()))

    def _emit_backlog(self) -> None:
        now = time.time()
        for job in self.jobs:
            for spool in job.config.spool_dirs:
                config = job.config
                backlog = measure_backlog(
                    spool,
                    hold_for_seconds=config.hold_for * 60,
                    now=now,
                    options=config.scan_options,
                    state_dir=config.state_dir(spool),
                )
                self.bus.emit(BacklogMeasured(backlog))


def _gated(job: Job) -> GatedRequests | None:
    """The S3 destination's request gate (the noop destination has none)."""
    requests = getattr(job.destination, "requests", None)
    return requests if isinstance(requests, GatedRequests) else None


def _exit_at_once(signum: int, frame: object) -> None:
    del frame
    flush_all()  # the log lines still queued
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(128 + signum)


def run(
    configs: Config | Sequence[Config],
    listeners: Sequence[Listener] = (),
    *,
    destination_factory: DestinationFactory = make_destination,
    measure_backlog: bool = False,
    stop_grace: float | None = None,
) -> Summary:
    """Run both phases once over every job; return the summary (``summary.ok``: exit 0 or 1).

    ``destination_factory`` lets tests wrap the real destination (fault hooks on its client).
    """
    jobs = [configs] if isinstance(configs, Config) else list(configs)

    async def once() -> Summary:
        async with Runner(
            jobs,
            listeners,
            destination_factory=destination_factory,
            measure_backlog=measure_backlog,
            stop_grace=stop_grace,
        ) as runner:
            summary = await runner.cycle()
            runner.bus.emit(RunFinished(summary))
            return summary

    return asyncio.run(once())
