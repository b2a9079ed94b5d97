"""Profile one tool on one workload: py-spy stacks by category, and server CPU per request.

    python -m bench.profile --workload W1 --tool spool_defaults --py-spy native --runs 2
    python -m bench.profile --workload W3 --tool spool_tool,aws --capture   # request shapes

Starts its own SeaweedFS server, generates the workload afresh for each run, and runs the tool
as ``bench.run`` does (same command lines, same launcher, so client CPU is the tool's own wait4
rusage). With ``--py-spy`` the tool runs under ``py-spy record`` (raw collapsed stacks, active
threads only, so samples approximate CPU time); the stacks are sorted into categories
(logging, events, journal, scan, obstore put, ...) and reported as ms of CPU per file. A run under
py-spy costs extra CPU (the sampler's), so its client CPU is reported next to an unprofiled run's.
With ``--capture`` the tool talks to S3 through ``bench.capture`` (a logging proxy) and the
request shapes it sent are summarised; timings of captured runs mean nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from bench import capture
from bench.measure import process_cpu_seconds, run_child
from bench.tools import (
    ALIASES,
    ALL_TOOLS,
    PEERS,
    SLUG,
    Target,
    child_env,
    command,
    compile_spool_tool,
    ensure_tools_venv,
    is_spool,
    wants_pty,
)
from bench.workloads import FULL, QUICK, generate

PREFIX = "data"

# (category, pattern in any frame of the stack), first match wins: a log line written from an
# event listener is "logging", not "events". Patterns match py-spy's "function (file:line)".
CATEGORIES: tuple[tuple[str, str], ...] = (
    ("cleanup phase", r"spool_tool/cleanup\.py"),
    ("progress display (rich)", r"observe/progress\.py|/rich/"),
    ("logging", r"observe/logs\.py|/logging/__init__\.py|display\.py"),
    ("metrics", r"observe/metrics\.py"),
    ("events (bus, summary)", r"spool_tool/events\.py"),
    ("journal / sqlite", r"spool_tool/journal\.py|sqlite3"),
    ("scan", r"spool_tool/scan\.py"),
    ("claim: key rendering", r"spool_tool/keys\.py|key_for"),
    ("credentials (botocore frozen creds)", r"BotoCredentials|get_frozen_credentials"),
    (
        "obstore put (Rust: HTTP, signing, checksum)",
        r"obstore_put\.py:\d+\)?$|\bput \(spool_tool/destinations/obstore_put|obstore",
    ),
    ("botocore request", r"/botocore/|/urllib3/"),
    ("read file into memory", r"read_body|_read_all|budget\.py"),
    ("move to completed + fsync", r"move_to_completed|fsync_dir|_flush|utime"),
    ("open / re-stat source", r"open_source|unchanged_since|Identity"),
    ("start-up: imports", r"_find_and_load|<module>|importlib"),
    (
        "start-up: cli/config/session",
        r"spool_tool/cli\.py|spool_tool/config\.py|make_session|click/",
    ),
    ("pipeline (_ship/_upload own code)", r"spool_tool/pipeline\.py"),
    ("threading", r"threading\.py"),
)


def categorise(stack: str) -> str:
    for name, pattern in _COMPILED:
        if pattern.search(stack):
            return name
    return "other"


_COMPILED = [(name, re.compile(p)) for name, p in CATEGORIES]


def read_stacks(path: Path) -> Counter[str]:
    """py-spy ``--format raw``: ``frame;frame;... COUNT`` per line."""
    stacks: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[stack] += int(count)
    return stacks


def leaf_functions(stacks: Counter[str], top: int) -> list[tuple[str, int]]:
    leaves: Counter[str] = Counter()
    for stack, n in stacks.items():
        leaves[stack.rsplit(";", 1)[-1]] += n
    return leaves.most_common(top)


def report_stacks(stacks: Counter[str], rate: int, files: int, cpu: float) -> str:
    total = sum(stacks.values())
    by_cat: Counter[str] = Counter()
    for stack, n in stacks.items():
        by_cat[categorise(stack)] += n
    lines = [
        (
            f"py-spy: {total} active-thread samples at {rate} Hz = {total / rate:.2f} s "
            f"(client CPU under py-spy {cpu:.2f} s)"
        ),
        "| category | samples | % | ms per file |",
        "|---|---|---|---|",
    ]
    per = max(files, 1)
    for name, n in by_cat.most_common():
        lines.append(f"| {name} | {n} | {100 * n / total:.1f} | {n / rate * 1000 / per:.3f} |")
    lines.append("")
    lines.append("Top leaf frames:")
    lines.extend(f"  {n:6d}  {leaf}" for leaf, n in leaf_functions(stacks, 25))
    return "\n".join(lines)


def perf_summary(data: Path) -> str:
    """CPU samples of the tool's process by shared object, then the top symbols."""
    out = []
    for sort, limit in (("dso", 15), ("dso,sym", 40)):
        text = subprocess.run(
            ["perf", "report", "-i", str(data), "--stdio", "--sort", sort],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        rows = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
        out.append(f"perf report --sort {sort} (top {limit}):")
        out.extend(rows[:limit])
    return "\n".join(out)


class _Proxy:
    """bench.capture's proxy on a thread, for the length of one run."""

    def __init__(self, port: int, upstream: tuple[str, int], out: Path) -> None:
        self.out = out.open("a")
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_until_complete,
            args=(capture.serve(port, upstream, self.out),),
            daemon=True,
        )
        self.thread.start()
        time.sleep(0.3)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--workload", default="W1")
    parser.add_argument("--tool", default="spool_defaults", help="comma-separated tools")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="the --quick workload sizes")
    parser.add_argument("--py-spy", choices=("off", "plain", "native"), default="off")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument(
        "--perf", action="store_true", help="perf record the tool (CPU by shared object, symbol)"
    )
    parser.add_argument("--capture", action="store_true", help="log request heads via a proxy")
    parser.add_argument("--out", type=Path, default=Path("bench/results/profile"))
    parser.add_argument("--spool-args", default="", help="extra spool_tool arguments")
    args = parser.parse_args(argv)
    workload = (QUICK if args.quick else FULL)[args.workload.upper()]
    tools = [ALIASES.get(t, t) for t in args.tool.split(",")]
    if any(t not in ALL_TOOLS for t in tools):
        parser.error(f"tools: {', '.join(ALL_TOOLS)}")
    if any(t in PEERS for t in tools):
        ensure_tools_venv()
    if any(is_spool(t) for t in tools):
        compile_spool_tool()
    args.out.mkdir(parents=True, exist_ok=True)
    from devtools.seaweed import SeaweedServer, free_port  # noqa: PLC0415

    work = Path(tempfile.mkdtemp(prefix="spool-profile-"))
    try:
        with SeaweedServer(work / "seaweed") as server:
            client = server.client()
            env = child_env(server.env())
            host, port = server.endpoint_url.removeprefix("http://").rsplit(":", 1)
            for run in range(1, args.runs + 1):
                for tool in tools:
                    name = f"{workload.name.lower()}-{SLUG[tool]}-r{run}"
                    spool = work / name
                    generate(str(spool / "new"), workload)
                    client.create_bucket(Bucket=name)
                    client.put_object(Bucket=name, Key="warmup", Body=b"w")
                    client.delete_object(Bucket=name, Key="warmup")
                    url = server.endpoint_url
                    heads = args.out / f"{name}-heads.jsonl"
                    if args.capture:
                        proxy_port = free_port()
                        heads.unlink(missing_ok=True)
                        _Proxy(proxy_port, (host, int(port)), heads)
                        url = f"http://127.0.0.1:{proxy_port}"
                    target = Target(url, server.access_key, server.secret_key, name, PREFIX)
                    cmd = command(tool, spool / "new", spool, target)
                    if args.spool_args and tool not in PEERS:
                        cmd[1:1] = args.spool_args.split()
                    stacks_path = args.out / f"{name}-{args.py_spy}.txt"
                    if args.py_spy != "off":
                        spy = [
                            str(Path(sys.executable).parent / "py-spy"), "record", "--format",
                            "raw", "--rate", str(args.rate), "--output", str(stacks_path),
                            # --native pauses every thread per sample (64 of them: wall x10);
                            # plain sampling need not stop the process at all.
                            *(["--native"] if args.py_spy == "native" else ["--nonblocking"]),
                            "--",
                        ]  # fmt: skip
                        cmd = [*spy, *cmd]
                    perf_data = args.out / f"{name}.perf.data"
                    if args.perf:
                        perf = [
                            shutil.which("perf") or "perf",
                            "record",
                            "-q",
                            "-F",
                            "999",
                            "-o",
                            str(perf_data),
                            "--",
                        ]
                        cmd = [*perf, *cmd]
                    before = process_cpu_seconds(server.pid) or 0.0
                    res = run_child(
                        cmd,
                        env=env,
                        log_path=args.out / f"{name}.log",
                        timeout=workload.timeout,
                        pty=wants_pty(tool),
                    )
                    server_cpu = (process_cpu_seconds(server.pid) or 0.0) - before
                    files = max(workload.count, 1)
                    print(
                        f"## {workload.name} {tool} run {run}: wall {res.wall:.2f} s, client "
                        f"CPU {res.cpu:.2f} s = {res.cpu * 1000 / files:.3f} ms/file "
                        f"(user {res.user:.2f}, sys {res.sys:.2f}), server CPU {server_cpu:.2f} s "
                        f"= {server_cpu * 1000 / files:.3f} ms/file = "
                        f"{server_cpu * 1e9 / max(workload.total_bytes, 1):.2f} s/GB, "
                        f"exit {res.returncode}",
                        flush=True,
                    )
                    if args.py_spy != "off" and stacks_path.exists():
                        stacks = read_stacks(stacks_path)
                        print(report_stacks(stacks, args.rate, workload.count, res.cpu))
                    if args.perf and perf_data.exists():
                        print(perf_summary(perf_data))
                    if args.capture and heads.exists():
                        time.sleep(0.2)
                        print(capture.summarise(heads))
                    shutil.rmtree(spool, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
