"""Wires one invocation together: listeners (logs, progress, metrics), one-shot or daemon.

The CLI builds the frozen configs and ``AppOptions`` and maps the returned summary to an exit
status; this module decides which listeners run and how.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from spool_tool.backlog import BacklogQuery, render_table, to_json
from spool_tool.display import display_name
from spool_tool.events import Event, Listener, RunFinished, Summary
from spool_tool.observe.logs import LogWriter
from spool_tool.run import Runner, run

if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import IO

    from spool_tool.config import Config
    from spool_tool.observe.metrics import MetricsListener
    from spool_tool.observe.output import CheckedOutput

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AppOptions:
    """Options of the invocation as a whole (not of one spool job)."""

    log_format: str = "text"
    level: int = logging.INFO
    watch: bool = False
    interval: float = 30.0
    metrics_file: Path | None = None
    metrics_port: int | None = None
    metrics_address: str = "127.0.0.1"


def show_status(spools: Sequence[BacklogQuery], log_format: str, out: CheckedOutput) -> bool:
    """Print each spool's backlog (JSON document or table), measured with its job's settings;
    changes nothing. False if a spool dir is missing or cannot be read (the reason is also
    written to stderr, one line each)."""
    now = time.time()
    backlogs = [query.measure(now) for query in spools]
    if log_format == "json":
        out.write(to_json(backlogs, generated_at=now) + "\n")
    else:
        from rich.console import Console  # noqa: PLC0415

        # Piped (cron mail, less): wide enough that paths are not cut.
        # rich types its file as IO[str]; it calls only write, flush and isatty
        console = Console(file=cast("IO[str]", out), width=None if out.isatty() else 200)
        render_table(backlogs, console)
    for backlog in backlogs:
        if backlog.error is not None:
            sys.stderr.write(f"spool_tool: {display_name(backlog.error)}\n")
    return all(b.ok for b in backlogs)


def execute(configs: Sequence[Config], options: AppOptions, writer: LogWriter) -> Summary:
    listeners: list[Listener] = [writer]
    metrics = None
    dry_run = all(c.dry_run for c in configs)
    if (options.metrics_file or options.metrics_port is not None) and not dry_run:
        from spool_tool.observe.metrics import MetricsListener  # noqa: PLC0415

        metrics = MetricsListener(options.metrics_file)
        listeners.append(metrics)
        if options.metrics_file is not None:
            listeners.append(_textfile_writer(metrics))
    progress = None
    if not options.watch and options.log_format == "text" and _draws_a_status_line(sys.stderr):
        from spool_tool.observe.progress import ProgressDisplay  # noqa: PLC0415

        progress = ProgressDisplay(sys.stderr)
        writer.stream = progress.line_stream()
        listeners.append(progress)
    try:
        if options.watch:
            return _daemon(configs, options, listeners, metrics, writer)
        return run(configs, listeners, measure_backlog=metrics is not None)
    finally:
        if progress is not None:
            progress.stop()


def _draws_a_status_line(stream: IO[str]) -> bool:
    """A terminal that moves its cursor: not ``TERM=dumb`` (Emacs' shell, many CI consoles),
    where the erase and cursor codes of the status line would show as garbage, nor no TERM."""
    return stream.isatty() and os.environ.get("TERM", "dumb") not in {"", "dumb"}


def _textfile_writer(metrics: MetricsListener) -> Listener:
    def write(event: Event) -> None:
        if isinstance(event, RunFinished):
            try:
                metrics.write_textfile()
            except OSError as exc:
                log.error("cannot write the metrics textfile: %s", exc)  # noqa: TRY400

    return write


def _daemon(
    configs: Sequence[Config],
    options: AppOptions,
    listeners: list[Listener],
    metrics: MetricsListener | None,
    writer: LogWriter,
) -> Summary:
    import asyncio  # noqa: PLC0415 - only the daemon needs a loop of its own here

    from spool_tool.watch import HEARTBEAT_SECONDS, watch  # noqa: PLC0415

    server = None
    served = "no metrics served"
    if metrics is not None and options.metrics_port is not None:
        server = metrics.serve(options.metrics_port, options.metrics_address)
        served = f"metrics on http://{server.address}:{server.port}/metrics"
    watched = "; ".join(
        f"{', '.join(display_name(d) for d in c.spool_dirs)} -> {c.destination}" for c in configs
    )
    writer.write(
        logging.INFO,
        "daemon_started",
        f"watching {watched} (rescan every {options.interval:g} s, heartbeat every "
        f"{HEARTBEAT_SECONDS:g} s when idle); {served}",
    )

    async def daemon() -> Summary:
        async with Runner(
            configs, listeners, measure_backlog=metrics is not None, daemon=True
        ) as runner:
            return await watch(runner, interval=options.interval)

    try:
        return asyncio.run(daemon())
    finally:
        if server is not None:
            server.shutdown()
