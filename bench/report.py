"""Per-run records, statistics and the Markdown/JSON report."""

from __future__ import annotations

import dataclasses
import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.tools import PEERS, PTY_PIPED, SPOOL_TOOL, is_spool
from bench.workloads import Workload

MB = 1_000_000  # throughput is in decimal MB/s, like the figures in TEST-SERVERS.md
MIB = 1024 * 1024


@dataclass
class RunRecord:
    workload: str
    tool: str
    run: int  # 1-based run number of this tool on this workload
    sequence: int  # position in the whole invocation
    files: int
    bytes: int
    bucket: str
    command: list[str]
    wall: float = 0.0
    user: float = 0.0
    sys: float = 0.0
    maxrss_kib: int = 0
    returncode: int | None = None
    timed_out: bool = False
    server_cpu: float | None = None  # SeaweedFS CPU seconds spent during the run
    loadavg_before: float | None = None
    objects_found: int | None = None
    bytes_found: int | None = None
    left_in_source: int | None = None
    ok: bool = False
    problems: list[str] = field(default_factory=list)
    log_tail: str = ""
    log_bytes: int = 0  # size of what the tool printed (its log file)
    # W5 (time to first upload) only
    first_upload: float | None = None
    completed_at_stop: int | None = None
    stop_seconds: float | None = None  # SIGTERM until exit

    @property
    def cpu(self) -> float:
        return self.user + self.sys

    @property
    def status(self) -> str:
        return "ok" if self.ok else "FAILED: " + "; ".join(self.problems)


def _fmt(values: Sequence[float], digits: int) -> str:
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:,.{digits}f}"
    return f"{med:,.{digits}f} ({min(values):,.{digits}f}-{max(values):,.{digits}f})"


def _metric(records: Sequence[RunRecord], get: Callable[[RunRecord], float | None]) -> list[float]:
    return [v for v in map(get, records) if v is not None]


def _median_wall(records: Sequence[RunRecord], tool: str) -> float | None:
    walls = [r.wall for r in records if r.tool == tool and r.ok]
    return statistics.median(walls) if walls else None


def _per_file(records: Sequence[RunRecord], get: Callable[[RunRecord], float | None]) -> str:
    """Median of ``get(r) * 1000 / files`` (ms per file), "-" for a workload without files."""
    values = [v * 1000 / r.files for r in records if r.files and (v := get(r)) is not None]
    return _fmt(values, 3)


def _per_gb(records: Sequence[RunRecord], get: Callable[[RunRecord], float | None]) -> str:
    """Median of ``get(r)`` per 10^9 bytes delivered (CPU seconds per GB)."""
    values = [v * 1e9 / r.bytes for r in records if r.bytes >= MB and (v := get(r)) is not None]
    return _fmt(values, 2)


def _rate(records: Sequence[RunRecord], amount: Callable[[RunRecord], float], digits: int) -> str:
    values = [amount(r) / r.wall for r in records if r.wall > 0 and amount(r) > 0]
    return _fmt(values, digits)


def _throughput_table(tools: Sequence[str], records: list[RunRecord]) -> str:
    spool_wall = _median_wall(records, SPOOL_TOOL)
    lines = [
        (
            "| tool | ok runs | wall s | files/s | MB/s | client CPU s | client CPU ms/file "
            "| server CPU s | server CPU ms/file | server CPU s/GB | peak RSS MiB "
            "| peer time / spool_tool time |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for tool in tools:
        runs = [r for r in records if r.tool == tool]
        ok = [r for r in runs if r.ok]
        if not runs:
            continue
        if not ok:
            lines.append(f"| {tool} | 0/{len(runs)} | FAILED |" + " |" * 9)
            continue
        wall = statistics.median([r.wall for r in ok])
        if tool == SPOOL_TOOL:
            ratio = "1.00 (reference)"
        elif spool_wall is None:
            ratio = "n/a (spool_tool failed)" if SPOOL_TOOL in tools else "n/a"
        else:
            ratio = f"{wall / spool_wall:.2f}"
        cells = [
            tool,
            f"{len(ok)}/{len(runs)}",
            _fmt([r.wall for r in ok], 2),
            _rate(ok, lambda r: r.files, 0),
            _rate(ok, lambda r: r.bytes / MB, 1),
            _fmt([r.cpu for r in ok], 2),
            _per_file(ok, lambda r: r.cpu),
            _fmt(_metric(ok, lambda r: r.server_cpu), 2),
            _per_file(ok, lambda r: r.server_cpu),
            _per_gb(ok, lambda r: r.server_cpu),
            _fmt([r.maxrss_kib / 1024 for r in ok], 0),
            ratio,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratio_table(tools: Sequence[str], records: Sequence[RunRecord]) -> str:
    """Each spool_tool variant against each peer: peer median wall / variant median wall."""
    variants = [t for t in tools if is_spool(t) and _median_wall(records, t) is not None]
    peers = [t for t in tools if t in PEERS]
    if not variants or not peers:
        return ""
    lines = [
        "| spool_tool variant | " + " | ".join(f"{p} / variant" for p in peers) + " |",
        "|---|" + "---|" * len(peers),
    ]
    for variant in variants:
        mine = _median_wall(records, variant)
        assert mine is not None
        cells = []
        for peer in peers:
            theirs = _median_wall(records, peer)
            cells.append("FAILED" if theirs is None else f"{theirs / mine:.2f}")
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pty_line(records: Sequence[RunRecord]) -> str:
    """The pseudo-terminal run against the same run piped (medians; < 1.05 is the target)."""
    on_pty, piped = PTY_PIPED
    pty_wall, piped_wall = _median_wall(records, on_pty), _median_wall(records, piped)
    if pty_wall is None or piped_wall is None or piped_wall <= 0:
        return ""
    cpu = {
        t: statistics.median([r.cpu for r in records if r.tool == t and r.ok])
        for t in (on_pty, piped)
    }
    cpu_ratio = f"{cpu[on_pty] / cpu[piped]:.2f}" if cpu[piped] > 0 else "n/a"
    return (
        f"Pseudo-terminal ({on_pty}) against the same run piped ({piped}): wall "
        f"{pty_wall:.2f} s / {piped_wall:.2f} s = **{pty_wall / piped_wall:.2f}**, client CPU "
        f"{cpu[on_pty]:.2f} s / {cpu[piped]:.2f} s = {cpu_ratio} (medians; 1.00 = no cost)."
    )


def _first_upload_table(tools: Sequence[str], records: list[RunRecord]) -> str:
    lines = [
        (
            "| tool | ok runs | time to first upload s | peak RSS MiB | CPU s until stopped "
            "| files completed when stopped | exit after SIGTERM s |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    for tool in tools:
        runs = [r for r in records if r.tool == tool]
        ok = [r for r in runs if r.ok]
        if not runs:
            continue
        if not ok:
            lines.append(f"| {tool} | 0/{len(runs)} | FAILED | | | | |")
            continue
        cells = [
            tool,
            f"{len(ok)}/{len(runs)}",
            _fmt(_metric(ok, lambda r: r.first_upload), 2),
            _fmt([r.maxrss_kib / 1024 for r in ok], 0),
            _fmt([r.cpu for r in ok], 2),
            _fmt(_metric(ok, lambda r: r.completed_at_stop), 0),
            _fmt(_metric(ok, lambda r: r.stop_seconds), 2),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def workload_section(
    workload: Workload,
    tools: Sequence[str],
    records: list[RunRecord],
    linger: float,
    meta_load: dict[str, str] | None = None,
) -> str:
    meta_load = meta_load or {}
    mine = [r for r in records if r.workload == workload.name]
    runs = max((r.run for r in mine), default=0)
    size_text = f"{workload.total_bytes / MB:,.1f} MB" if workload.total_bytes >= MB else ""
    head = f"### {workload.name}: {workload.describe()}"
    head += f" ({size_text}), " if size_text else ", "
    head += f"{runs} run{'s' if runs != 1 else ''} per tool"
    load = meta_load.get(workload.name)
    if load:
        head += f" (load average at start {load})"
    extra: list[str] = []
    if workload.first_upload:
        body = _first_upload_table(tools, mine)
        note = (
            f"Files are all in new/ when the tool starts; the run is stopped (SIGTERM) "
            f"{linger:g} s after the first file appears in completed/. Peak RSS and CPU are "
            "those of the whole process until it exited."
        )
    else:
        body = _throughput_table(tools, mine)
        note = (
            "Median (min-max) over the successful runs. files/s and MB/s (10^6 B) are per run "
            "from the wall time; client CPU (user + sys) and peak RSS are the tool process's "
            "own plus any children it reaped (wait4 rusage); server CPU is the SeaweedFS "
            "process's user + sys CPU delta over the run (/proc/PID/stat), per file and per "
            "10^9 bytes. The last column is the median wall time of the tool divided by "
            "spool_tool's (-q): > 1 means spool_tool is faster."
        )
        extra = [x for x in (ratio_table(tools, mine), pty_line(mine)) if x]
    failures = [r for r in mine if not r.ok]
    fail_lines = [
        f"- FAILED {r.tool} run {r.run}: {'; '.join(r.problems)}"
        + (f" (log tail: `{_one_line(r.log_tail)}`)" if r.log_tail else "")
        for r in failures
    ]
    failed = ["\n".join(fail_lines)] if fail_lines else []
    return "\n\n".join([head, body, note, *extra, *failed])


def _one_line(text: str, limit: int = 300) -> str:
    flat = " | ".join(line.strip() for line in text.strip().splitlines() if line.strip())
    flat = flat.replace("`", "'")
    return flat if len(flat) <= limit else "..." + flat[-limit:]


def machine_section(meta: dict[str, Any]) -> str:
    m = meta["machine"]
    lines = [
        f"- started: {meta['started']}; command: `{meta['argv']}`",
        (
            f"- machine: {m['nproc']} CPUs usable ({m['cpu_count']} online), {m['cpu_model']}, "
            f"{m['mem_total_gib']:.1f} GiB RAM, load average at start {m['loadavg']}"
        ),
        f"- {m['platform']}; Python {m['python']}",
        f"- spool_tool: {meta['spool_tool']}",
        *(f"- {tool}: {text}" for tool, text in meta.get("variants", {}).items()),
        (
            f"- server: SeaweedFS `weed mini` ({meta['weed_version']}), one server for the whole "
            "invocation, one bucket per (workload, tool, run)"
        ),
    ]
    lines.extend(f"- {tool}: {v}" for tool, v in meta["tool_versions"].items())
    lines.extend(f"- {note}" for note in meta.get("notes", []))
    return "\n".join(lines)


def render(
    meta: dict[str, Any],
    plan: Sequence[tuple[Workload, Sequence[str]]],
    records: list[RunRecord],
    linger: float,
) -> str:
    title = f"# spool_tool benchmark, commit {meta.get('commit', 'unknown')}"
    parts = [title, machine_section(meta)]
    for workload, tools in plan:
        if any(r.workload == workload.name for r in records):
            parts.append(
                workload_section(workload, tools, records, linger, meta.get("workload_load"))
            )
    return "\n\n".join(parts) + "\n"


def write(
    results_dir: Path, stamp: str, markdown: str, meta: dict[str, Any], records: list[RunRecord]
) -> tuple[Path, Path]:
    results_dir.mkdir(parents=True, exist_ok=True)
    md_path = results_dir / f"{stamp}.md"
    json_path = results_dir / f"{stamp}.json"
    md_path.write_text(markdown)
    raw = {
        "meta": meta,
        "runs": [dataclasses.asdict(r) | {"cpu": r.cpu, "status": r.status} for r in records],
    }
    tmp = json_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(raw, indent=2) + "\n")
    tmp.replace(json_path)
    return md_path, json_path
