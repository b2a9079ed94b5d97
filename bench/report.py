"""Per-run records, statistics and the Markdown/JSON report."""

from __future__ import annotations

import dataclasses
import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.tools import SPOOL_TOOL
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


def _throughput_table(tools: Sequence[str], records: list[RunRecord]) -> str:
    ok_by_tool = {t: [r for r in records if r.tool == t and r.ok] for t in tools}
    spool = ok_by_tool.get(SPOOL_TOOL, [])
    spool_wall = statistics.median([r.wall for r in spool]) if spool else None
    lines = [
        (
            "| tool | ok runs | wall s | files/s | MB/s | CPU s | CPU ms/file | peak RSS MiB "
            "| server CPU s | peer time / spool_tool time |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for tool in tools:
        runs = [r for r in records if r.tool == tool]
        ok = ok_by_tool[tool]
        if not runs:
            continue
        if not ok:
            lines.append(f"| {tool} | 0/{len(runs)} | FAILED | | | | | | | |")
            continue
        if spool_wall is None:
            ratio = "n/a (spool_tool failed)" if SPOOL_TOOL in tools else "n/a"
        else:
            ratio = f"{statistics.median([r.wall for r in ok]) / spool_wall:.2f}"
        if tool == SPOOL_TOOL:
            ratio = "1.00 (reference)"
        cells = [
            tool,
            f"{len(ok)}/{len(runs)}",
            _fmt([r.wall for r in ok], 2),
            _fmt([r.files / r.wall for r in ok], 0),
            _fmt([r.bytes / MB / r.wall for r in ok], 1),
            _fmt([r.cpu for r in ok], 2),
            _fmt([r.cpu * 1000 / r.files for r in ok], 3),
            _fmt([r.maxrss_kib / 1024 for r in ok], 0),
            _fmt(_metric(ok, lambda r: r.server_cpu), 2),
            ratio,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


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
    workload: Workload, tools: Sequence[str], records: list[RunRecord], linger: float
) -> str:
    mine = [r for r in records if r.workload == workload.name]
    runs = max((r.run for r in mine), default=0)
    size_text = f"{workload.total_bytes / MB:,.1f} MB" if workload.total_bytes >= MB else ""
    head = f"### {workload.name}: {workload.describe()}"
    head += f" ({size_text}), " if size_text else ", "
    head += f"{runs} run{'s' if runs != 1 else ''} per tool"
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
            "from the wall time; CPU and peak RSS are the tool process's own (wait4 rusage); "
            "server CPU is what SeaweedFS spent during the run. The last column is the median "
            "wall time of the tool divided by spool_tool's: > 1 means spool_tool is faster."
        )
    failures = [r for r in mine if not r.ok]
    fail_lines = [
        f"- FAILED {r.tool} run {r.run}: {'; '.join(r.problems)}"
        + (f" (log tail: `{_one_line(r.log_tail)}`)" if r.log_tail else "")
        for r in failures
    ]
    return "\n\n".join([head, body, note, *(["\n".join(fail_lines)] if fail_lines else [])])


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
    parts = ["# spool_tool benchmark", machine_section(meta)]
    for workload, tools in plan:
        if any(r.workload == workload.name for r in records):
            parts.append(workload_section(workload, tools, records, linger))
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
