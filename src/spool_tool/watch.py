"""Daemon mode (``--watch``): upload files as soon as they become eligible.

Each cycle is a normal run (upload phase, then cleanup when due). Between cycles the daemon
waits for the first of: a filesystem notification in a ``new/`` directory (inotify, Linux), the
moment a held file becomes eligible (``--hold-for``), or ``--interval`` seconds (the periodic
rescan, which is also the fallback where notifications are unavailable). A cycle that ended on
an S3 failure backs off exponentially (5 s doubling to 5 min) instead of spinning. SIGTERM or
SIGINT stops claiming, lets in-flight uploads finish (``run.STOP_GRACE_SECONDS``), and the daemon
exits 0. A cycle is logged only when it did something; an idle daemon logs a heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from spool_tool.events import DaemonIdle, RunFinished, Summary
from spool_tool.spoolfs import regular_entries

if TYPE_CHECKING:
    from pathlib import Path

    from spool_tool.run import Runner

log = logging.getLogger(__name__)

BACKOFF_START = 5.0
BACKOFF_MAX = 300.0
DEBOUNCE = 0.05  # collect a burst of notifications into one cycle
HEARTBEAT_SECONDS = 300.0  # an idle daemon logs that it is alive this often (not every cycle)


class Notifier:
    """inotify on every ``new/`` directory; ``changed`` is set when a file lands or closes."""

    def __init__(self, directories: list[Path]) -> None:
        self.changed = asyncio.Event()
        self._inotify: object | None = None
        try:
            import inotify_simple  # noqa: PLC0415 - Linux only

            inotify = inotify_simple.INotify()
            mask = (
                inotify_simple.flags.CLOSE_WRITE
                | inotify_simple.flags.MOVED_TO
                | inotify_simple.flags.ATTRIB
            )
            for directory in directories:
                if directory.is_dir():
                    inotify.add_watch(directory, mask)
        except (ImportError, OSError) as exc:
            log.warning("file notifications unavailable (%s): rescanning every interval", exc)
            return
        self._inotify = inotify
        asyncio.get_running_loop().add_reader(inotify.fileno(), self._drain)

    @property
    def active(self) -> bool:
        return self._inotify is not None

    def _drain(self) -> None:
        assert self._inotify is not None
        if self._inotify.read(timeout=0):  # type: ignore[attr-defined]
            self.changed.set()

    def close(self) -> None:
        if self._inotify is not None:
            asyncio.get_running_loop().remove_reader(self._inotify.fileno())  # type: ignore[attr-defined]
            self._inotify.close()  # type: ignore[attr-defined]
            self._inotify = None


def next_eligible_at(new_dirs: list[tuple[Path, float]], now: float) -> float | None:
    """The earliest time a file held by ``--hold-for`` becomes eligible (None: none held)."""
    earliest: float | None = None
    for new, hold_for in new_dirs:
        if hold_for <= 0:
            continue
        try:
            for _, st in regular_entries(new):
                due = st.st_mtime + hold_for
                if due > now and (earliest is None or due < earliest):
                    earliest = due
        except OSError:
            continue  # unreadable: the cycle reports it
    return earliest


async def watch(runner: Runner, *, interval: float) -> Summary:
    """Run cycles until a signal; returns the last cycle's summary.

    Only cycles that did something are reported (``RunFinished.report``); an idle daemon says
    it is alive every ``HEARTBEAT_SECONDS`` instead of once per cycle."""
    held = [
        (spool / "new", job.config.hold_for * 60)
        for job in runner.jobs
        for spool in job.config.spool_dirs
    ]
    notifier = Notifier([new for new, _ in held])
    summary = Summary(mode=runner.state.mode)
    backoff = 0.0
    last_cleanup = 0.0
    last_report = time.monotonic()
    try:
        while not runner.stopping.is_set():
            notifier.changed.clear()
            started = time.monotonic()
            cleanup_due = started - last_cleanup >= interval
            summary = await runner.cycle(cleanup=cleanup_due)
            if cleanup_due:
                last_cleanup = started
            runner.bus.emit(RunFinished(summary, report=summary.did_something))
            last_report = _heartbeat(runner, summary, last_report, len(held))
            if runner.stopping.is_set():
                break
            # Back off when the cycle was stopped (fatal error, too many failures in a row) or
            # when S3 failed and nothing got through: never retry a sick endpoint in a loop.
            failed_on_s3 = summary.stop is not None or (
                summary.s3_failed > 0 and summary.uploaded == 0
            )
            backoff = min(max(backoff * 2, BACKOFF_START), BACKOFF_MAX) if failed_on_s3 else 0.0
            await _wait(runner, notifier, held, interval, backoff)
    finally:
        notifier.close()
    return summary


def _heartbeat(runner: Runner, summary: Summary, last_report: float, spools: int) -> float:
    """Emit ``DaemonIdle`` when nothing was reported for ``HEARTBEAT_SECONDS``; returns the
    time of the last report."""
    now = time.monotonic()
    if summary.did_something:
        return now
    if now - last_report >= HEARTBEAT_SECONDS:
        runner.bus.emit(DaemonIdle(spools, now - last_report))
        return now
    return last_report


async def _wait(
    runner: Runner,
    notifier: Notifier,
    held: list[tuple[Path, float]],
    interval: float,
    backoff: float,
) -> None:
    now = time.time()
    timeout = interval
    if backoff:
        timeout = backoff
        log.warning("S3 is failing: next attempt in %.0f s", backoff)
    else:
        due = next_eligible_at(held, now)
        if due is not None:
            timeout = min(timeout, max(due - now, 0.0) + 0.01)
    waiters = [asyncio.ensure_future(runner.stopping.wait())]
    if not backoff:
        waiters.append(asyncio.ensure_future(notifier.changed.wait()))
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
    if notifier.changed.is_set() and runner.state.signal is None:
        await asyncio.sleep(DEBOUNCE)
