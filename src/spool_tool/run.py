"""A run: cycles of the upload phase over every job, then the cleanup phase; signals.

``run()`` is the library entry point (one cycle); ``--watch`` runs many (``spool_tool.watch``).

Stopping. The first SIGTERM or SIGINT stops claiming files and lets the uploads in flight
finish for up to ``STOP_GRACE_SECONDS`` (multipart uploads are aborted between parts); when the
grace period runs out (or after ``IDLE_GRACE_SECONDS`` with no upload in flight, when the
cycle waits on S3 for something else), or on a second signal, the process leaves at once.
That is safe: every claimed file keeps its key in the journal, and the next run aborts any
multipart upload left open and uploads the unfinished files again to the same keys.

A one-shot run has no event loop (importing asyncio costs ~25 ms of a ~0.2 s start-up, issue
10): the cycle runs in the calling thread and signals are read from a wakeup pipe by a thread
of their own (what asyncio's ``add_signal_handler`` does, without the loop). The daemon keeps
its loop (``watch``). Either way the grace timer is a thread.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
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
    import asyncio
    from collections.abc import Callable, Sequence

STOP_GRACE_SECONDS = 30.0
IDLE_GRACE_SECONDS = 2.0  # after a signal, with no upload in flight, wait no longer than this
_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Runner:
    """Runs cycles over every job; owns the jobs' destinations, the run state and the signals.

    ``daemon``: a signal is the normal way to end (logged as such; see ``watch``).
    """

    stopping: asyncio.Event  # wakes a daemon waiting between cycles (set up by __aenter__)

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
        self._on_loop = False  # entered with ``async with`` (the daemon)
        self._in_cycle = False
        self._grace: threading.Event | None = None  # set: the grace timer stands down
        self._cycle_lock = threading.Lock()  # _in_cycle and _grace, against the signal thread
        self._signal_reader: _SignalReader | None = None

    # -- one-shot: no event loop --------------------------------------------------------------

    def __enter__(self) -> Self:
        self._signal_reader = _SignalReader(self._on_signal)
        try:
            self._open()
        except BaseException:
            self._signal_reader.close()  # no handler of ours outlives the run
            self._signal_reader = None
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for job in self.jobs:
            job.close()
        if self._signal_reader is not None:
            self._signal_reader.close()
            self._signal_reader = None
        self._after_signals()

    def cycle_here(self, *, cleanup: bool = True) -> Summary:
        """``cycle`` in the calling thread (a one-shot run: the signals have a thread)."""
        self._begin_cycle()
        try:
            self._cycle(cleanup=cleanup)
        finally:
            self._end_cycle()
        return self.state.end_cycle()

    # -- daemon: on the event loop ------------------------------------------------------------

    async def __aenter__(self) -> Self:
        import asyncio  # noqa: PLC0415 - the daemon's loop only (start-up of a one-shot run)

        self.stopping = asyncio.Event()
        self._on_loop = True
        loop = asyncio.get_running_loop()
        for signum in _SIGNALS:
            loop.add_signal_handler(signum, self._on_signal, signum)
        self._open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        import asyncio  # noqa: PLC0415

        loop = asyncio.get_running_loop()
        for job in self.jobs:
            job.close()
        for signum in _SIGNALS:
            loop.remove_signal_handler(signum)
        self._after_signals()

    async def cycle(self, *, cleanup: bool = True) -> Summary:
        """One pass: upload phase over every job, then (if ``cleanup``) the cleanup phase;
        returns what it did. The work blocks, so it runs in a thread; this loop stays free to
        take signals."""
        import asyncio  # noqa: PLC0415

        self._begin_cycle()
        try:
            await asyncio.to_thread(self._cycle, cleanup=cleanup)
        finally:
            self._end_cycle()
        return self.state.end_cycle()

    # -- both ---------------------------------------------------------------------------------

    def _open(self) -> None:
        # --bwlimit is a whole-run option: one token bucket for every job's destination.
        rate = next((c.s3.bwlimit for c in (j.config for j in self.jobs) if c.s3.bwlimit), None)
        limiter = BandwidthLimiter(rate) if rate is not None else None
        for job in self.jobs:
            job.open(self.destination_factory)
            requests = _gated(job)
            if requests is not None:
                requests.gate.on_change = self.bus.emit  # throttling started / ended
                requests.limiter = limiter

    def _after_signals(self) -> None:
        """The handlers are gone; if stopping already, a second signal while the process
        winds down (closing, interpreter shutdown) still means "exit at once", never a
        traceback."""
        if self.state.signal is not None:
            for signum in _SIGNALS:
                signal.signal(signum, _exit_at_once)

    def _begin_cycle(self) -> None:
        self.state.begin_cycle()
        with self._cycle_lock:
            self._in_cycle = True

    def _end_cycle(self) -> None:
        with self._cycle_lock:
            self._in_cycle = False
            if self._grace is not None:
                self._grace.set()
                self._grace = None

    # -- signals ------------------------------------------------------------------------------

    def _on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self.state.signal is not None:
            self._exit_now(f"received {name} again: exiting at once", 128 + signum)
            return
        reason = f"received {name}"
        with self._cycle_lock:
            in_cycle = self._in_cycle
        if in_cycle:
            reason += (
                f": finishing the uploads in flight (for up to {self.stop_grace:g} s), "
                "claiming no more"
            )
        self.state.request_stop(reason, signum)
        self.bus.emit(RunStopped(reason, signum, normal=self.daemon))
        if self._on_loop:
            self.stopping.set()
        for job in self.jobs:
            job.cancel()
        with self._cycle_lock:
            if self._in_cycle and self._grace is None:
                self._grace = threading.Event()
                threading.Thread(
                    target=self._leave_after_grace,
                    args=(signum, self._grace),
                    name="stop-grace",
                    daemon=True,
                ).start()

    def _leave_after_grace(self, signum: int, ended: threading.Event) -> None:
        """Leave at once if the cycle has not ended (``ended``) when the uploads in flight had
        ``stop_grace`` seconds, or when none is in flight for ``IDLE_GRACE_SECONDS`` (the
        cycle waits on something else: a pre-flight, an abort, a HEAD)."""
        deadline = time.monotonic() + self.stop_grace
        idle_since: float | None = None
        while True:
            if ended.wait(0.05):
                return
            now = time.monotonic()
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
    with Runner(
        jobs,
        listeners,
        destination_factory=destination_factory,
        measure_backlog=measure_backlog,
        stop_grace=stop_grace,
    ) as runner:
        summary = runner.cycle_here()
        runner.bus.emit(RunFinished(summary))
        return summary


class _SignalReader:
    """SIGTERM and SIGINT for a run without an event loop, as asyncio's ``add_signal_handler``
    takes them: the C handler writes the signal number to a pipe (``set_wakeup_fd``; the Python
    handler does nothing, so the interrupted thread runs no code of ours), syscalls restart, and
    a thread of its own reads the pipe and calls ``on_signal`` with no lock of the interrupted
    thread held. Main thread only."""

    def __init__(self, on_signal: Callable[[int], None]) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        self._previous_fd = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        for signum in _SIGNALS:
            signal.signal(signum, _ignore)
            signal.siginterrupt(signum, False)
        self._thread = threading.Thread(
            target=self._dispatch, args=(on_signal,), name="signals", daemon=True
        )
        self._thread.start()

    def _dispatch(self, on_signal: Callable[[int], None]) -> None:
        while data := os.read(self._read, 64):  # b"": close() closed the write end
            for signum in data:
                if signum in _SIGNALS:
                    on_signal(signum)

    def close(self) -> None:
        """Restore the default handlers and the previous wakeup fd; end the thread."""
        for signum in _SIGNALS:
            signal.signal(
                signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
            )
        signal.set_wakeup_fd(self._previous_fd)
        os.close(self._write)
        self._thread.join()
        os.close(self._read)


def _ignore(signum: int, frame: object) -> None:
    del signum, frame  # the wakeup pipe carries the signal to _SignalReader
