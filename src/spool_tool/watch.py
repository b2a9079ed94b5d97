"""Daemon mode (``--watch``): upload files as soon as they become eligible.

Each cycle is a normal run (upload phase, then cleanup when due). Between cycles the daemon
waits for the first of: a filesystem notification in a ``new/`` directory (inotify, Linux), the
moment a held file becomes eligible (``--hold-for``), or ``--interval`` seconds (the periodic
rescan, which is also the fallback where notifications are unavailable, or where the inotify
watch limit left a subdirectory of a ``--recursive`` spool without a watch). A cycle that ended on
an S3 failure backs off exponentially (5 s doubling to 5 min) instead of spinning. SIGTERM or
SIGINT stops claiming, lets in-flight uploads finish (``run.STOP_GRACE_SECONDS``), and the daemon
exits 0. A cycle is logged only when it did something; an idle daemon logs a heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import stat
import time
from typing import TYPE_CHECKING

from spool_tool.crashpoints import max_watches
from spool_tool.events import DaemonIdle, RunFinished, Summary

if TYPE_CHECKING:
    from pathlib import Path

    from spool_tool.run import Runner
    from spool_tool.scan import ScanOptions

log = logging.getLogger(__name__)

BACKOFF_START = 5.0
BACKOFF_MAX = 300.0
DEBOUNCE = 0.05  # collect a burst of notifications into one cycle
HEARTBEAT_SECONDS = 300.0  # an idle daemon logs that it is alive this often (not every cycle)


WATCH_LIMIT_HINT = "fs.inotify.max_user_watches"


class Notifier:
    """inotify on every ``new/`` directory; ``changed`` is set when a file lands or closes.

    With ``--recursive`` each subdirectory a scan would enter is watched too, from the start
    and as it appears (created or moved in: it is watched, with what is below it, and a cycle
    follows), and unwatched as it leaves (moved away: watched again at its new path if that is
    below ``new/``; deleted: the kernel drops the watch). When the kernel's watch limit is
    reached (``ENOSPC``), one warning says so and the directories left without a watch are
    picked up by the periodic rescan (``--interval``).
    ``max_watches`` lowers that limit (tests cannot change the kernel's)."""

    def __init__(
        self, spools: list[tuple[Path, ScanOptions]], *, max_watches: int | None = None
    ) -> None:
        self.changed = asyncio.Event()
        self._inotify: object | None = None
        self._dirs: dict[int, tuple[Path, str, ScanOptions]] = {}  # wd -> (new/, reldir, ...)
        self._max_watches = max_watches
        self.limited = False  # the watch limit was reached: rescans cover the rest
        try:
            import inotify_simple  # noqa: PLC0415 - Linux only

            self._flags = inotify_simple.flags
            inotify = inotify_simple.INotify()
            self._inotify = inotify
            for new, options in spools:
                if new.is_dir():
                    self._watch_tree(new, "", options, follow=True)
        except (ImportError, OSError) as exc:
            opened, self._inotify = self._inotify, None
            if opened is not None:
                opened.close()  # type: ignore[union-attr]
            log.warning("file notifications unavailable (%s): rescanning every interval", exc)
            return
        asyncio.get_running_loop().add_reader(inotify.fileno(), self._drain)

    @property
    def active(self) -> bool:
        return self._inotify is not None

    @property
    def watched(self) -> set[Path]:
        """The directories watched now, by their current paths."""
        return {new / rel if rel else new for new, rel, _ in self._dirs.values()}

    def _mask(self, options: ScanOptions, follow: bool) -> int:
        flags = self._flags
        mask = flags.CLOSE_WRITE | flags.MOVED_TO | flags.ATTRIB
        if options.max_depth != 1:
            mask |= flags.CREATE  # a subdirectory appears (files: their CLOSE_WRITE counts)
            mask |= flags.MOVED_FROM  # a subdirectory leaves: its watches are dropped
        if not follow:
            mask |= flags.DONT_FOLLOW | flags.ONLYDIR  # never a symlink below new/
        return int(mask)

    def _watch_tree(self, new: Path, reldir: str, options: ScanOptions, *, follow: bool) -> None:
        """Watch ``new/reldir`` and the subdirectories a scan enters below it. ``new/`` itself
        may be a symlink (as configured); nothing below it is followed."""
        if not self._add(new, reldir, options, follow=follow) or options.max_depth == 1:
            return
        for rel, _ in options.subdirectories(new, start=reldir):
            if not self._add(new, rel, options, follow=False):
                return

    def _add(self, new: Path, reldir: str, options: ScanOptions, *, follow: bool) -> bool:
        """Add one watch; False (and one warning for the daemon's life) at the watch limit."""
        if self.limited:
            return False
        try:
            wd = self._add_watch(new / reldir if reldir else new, self._mask(options, follow))
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                if not reldir:
                    raise  # new/ itself: notifications unavailable
                return True  # gone, or a symlink now (ONLYDIR|DONT_FOLLOW): nothing to watch
            self.limited = True
            log.warning(
                "inotify watch limit reached (%s) at %s: directories without a watch are "
                "rescanned every --interval",
                WATCH_LIMIT_HINT,
                new / reldir,
            )
            return False
        self._dirs[wd] = (new, reldir, options)
        return True

    def _add_watch(self, path: Path, mask: int) -> int:
        """``inotify_add_watch``; ``ENOSPC`` also once ``max_watches`` are held."""
        if self._max_watches is not None and len(self._dirs) >= self._max_watches:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        assert self._inotify is not None
        wd: int = self._inotify.add_watch(path, mask)  # type: ignore[attr-defined]
        return wd

    def _drain(self) -> None:
        assert self._inotify is not None
        flags = self._flags
        for event in self._inotify.read(timeout=0):  # type: ignore[attr-defined]
            if event.mask & flags.IGNORED:
                self._dirs.pop(event.wd, None)  # the directory went away
                continue
            if event.mask & flags.Q_OVERFLOW:
                self.changed.set()  # events were lost: a cycle rescans
                continue
            where = self._dirs.get(event.wd)
            if where is None:
                continue  # queued before its watch was dropped (moved away)
            if event.mask & flags.ISDIR:
                new, reldir, options = where
                rel = f"{reldir}/{event.name}" if reldir else event.name
                if event.mask & flags.MOVED_FROM:
                    self._unwatch_tree(new, rel)
                elif event.mask & (flags.CREATE | flags.MOVED_TO):
                    self._watch_new_dir(new, rel, options)
                    self.changed.set()
                continue
            if not event.mask & (flags.CREATE | flags.MOVED_FROM):  # a file is only ready
                self.changed.set()  # once closed or moved in; one moved out needs no cycle

    def _watch_new_dir(self, new: Path, reldir: str, options: ScanOptions) -> None:
        depth = reldir.count("/") + 1  # of the directory; its files are one deeper
        if options.max_depth is not None and depth >= options.max_depth:
            return
        if options.path_filter.excludes_dir(reldir):
            return
        self._watch_tree(new, reldir, options, follow=False)

    def _unwatch_tree(self, new: Path, reldir: str) -> None:
        """Drop the watches of ``new/reldir`` and below: the directory was moved away. Moved
        within ``new/``, its ``MOVED_TO`` (which follows) watches it again at its new path;
        the watch descriptors follow the inode, but this map of their paths would not."""
        below = reldir + "/"
        for wd, (watched_new, rel, _) in list(self._dirs.items()):
            if watched_new == new and (rel == reldir or rel.startswith(below)):
                del self._dirs[wd]
                with contextlib.suppress(OSError):  # already gone (deleted meanwhile)
                    self._inotify.rm_watch(wd)  # type: ignore[union-attr]

    def close(self) -> None:
        if self._inotify is not None:
            asyncio.get_running_loop().remove_reader(self._inotify.fileno())  # type: ignore[attr-defined]
            self._inotify.close()  # type: ignore[attr-defined]
            self._inotify = None


def next_eligible_at(new_dirs: list[tuple[Path, float, ScanOptions]], now: float) -> float | None:
    """The earliest time a file held by ``--hold-for`` becomes eligible (None: none held)."""
    earliest: float | None = None
    for new, hold_for, options in new_dirs:
        if hold_for <= 0:
            continue
        try:
            for _, st in options.walk(new):
                if not stat.S_ISREG(st.st_mode):
                    continue
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
        (spool / "new", job.config.hold_for * 60, job.config.scan_options)
        for job in runner.jobs
        for spool in job.config.spool_dirs
    ]
    notifier = Notifier([(new, options) for new, _, options in held], max_watches=max_watches())
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
    held: list[tuple[Path, float, ScanOptions]],
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
