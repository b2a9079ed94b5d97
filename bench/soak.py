"""Soak test: spool_tool --watch under a steady trickle of files on a local SeaweedFS server.

    python -m bench.soak                          # 10 minutes at 500 files/s
    python -m bench.soak --minutes 3 --rate 300   # shorter
    python -m bench.soak --engine boto3

Starts a SeaweedFS server (fresh temp dir, bucket ``soak``) and the daemon
``spool_tool --watch --interval 5 --delete-after 0.5 -q --metrics-port P SPOOL s3://soak/p/``,
then feeds ~1 KiB files into ``SPOOL/new`` at ``--rate`` files per second (each written under a
temporary name in ``SPOOL`` and renamed into ``new/``). Every 5 s it samples the daemon's RSS
(VmRSS), open fds, threads and CPU time from /proc, the backlog (files in ``new/``) and the
daemon's own upload counter (``/metrics``); one file per interval is followed with HEAD requests
(every 10 ms) to measure the upload latency (rename into ``new/`` -> object exists).

When feeding stops the daemon gets up to ``--drain-timeout`` seconds to empty ``new/``, then
SIGTERM; it must exit 0 and the bucket must hold every fed file (names compared). Verdict: RSS
growth from the first-minute median to the last-minute median (flagged above 20 % or 30 MiB),
fd and thread counts stable, backlog bounded. The table and verdict go to stdout and
bench/results/soak-<timestamp>.md. Exit status 0 when every check passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from botocore.config import Config
from botocore.exceptions import ClientError

from bench.tools import BENCH_DIR, child_env, spool_tool_binary
from devtools.seaweed import SeaweedServer, free_port

if TYPE_CHECKING:
    from collections.abc import Sequence

    from mypy_boto3_s3 import S3Client

BUCKET = "soak"
PREFIX = "p"
SAMPLE_EVERY = 5.0  # seconds between samples
WATCH_INTERVAL = 5  # the daemon's --interval
DELETE_AFTER = 0.5  # the daemon's --delete-after (minutes)
FILE_SIZE = 1024
PROBE_POLL = 0.01  # seconds between HEAD requests of the latency probe
PROBE_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0  # seconds the daemon gets to exit after SIGTERM
WINDOW = 60.0  # "first minute" / "last minute"
RSS_GROWTH_PCT = 20.0
RSS_GROWTH_MIB = 30.0
FD_SLACK = 8  # connection-pool churn: sockets come and go
THREAD_SLACK = 2
BACKLOG_FLOOR_SECONDS = 5.0  # a backlog of rate x 5 s is always "bounded"


def _log(msg: str) -> None:
    print(f"[soak] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- /proc


def _status_fields(pid: int) -> dict[str, str]:
    fields: dict[str, str] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    rest = data[data.rindex(")") + 2 :].split()  # fields from 3 (state) on
    ticks = int(rest[11]) + int(rest[12])  # utime, stime (fields 14, 15)
    return ticks / os.sysconf("SC_CLK_TCK")


def _count_files(directory: Path) -> int:
    try:
        with os.scandir(directory) as it:
            return sum(1 for e in it if not e.name.startswith("."))
    except FileNotFoundError:
        return 0


def _scrape_uploaded(port: int) -> int | None:
    """spool_tool_files_uploaded_total from the daemon's /metrics (None: no answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("spool_tool_files_uploaded_total"):
            return int(float(line.split()[-1]))
    return None


# --------------------------------------------------------------------------- feeding


class Feeder(threading.Thread):
    """Writes ``rate`` files per second into ``spool/new`` (temp name + rename) until stopped."""

    def __init__(self, spool: Path, rate: float) -> None:
        super().__init__(name="feeder", daemon=True)
        self.spool = spool
        self.new = spool / "new"
        self.rate = rate
        self.fed = 0
        self.max_lag = 0.0  # seconds the feeder ran behind its schedule at worst
        self.last: tuple[str, float] | None = None  # (name, monotonic time of its rename)
        self.error: BaseException | None = None
        self.started_at = 0.0
        self.stopped_at = 0.0
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._pad = b"x" * FILE_SIZE

    def stop(self) -> None:
        self._halt.set()

    def latest(self) -> tuple[str, float] | None:
        with self._lock:
            return self.last

    def _write_one(self, seq: int) -> None:
        name = f"soak-{seq:09d}.dat"
        tmp = os.path.join(self.spool, f".feed-{seq:09d}.tmp")
        header = f"{name} {time.time():.6f}\n".encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, header + self._pad[: FILE_SIZE - len(header)])
        finally:
            os.close(fd)
        os.rename(tmp, os.path.join(self.new, name))
        renamed = time.monotonic()
        with self._lock:
            self.last = (name, renamed)
            self.fed = seq + 1

    def run(self) -> None:
        try:
            self.started_at = time.monotonic()
            seq = 0
            while not self._halt.is_set():
                now = time.monotonic()
                due = int((now - self.started_at) * self.rate)
                if seq < due:
                    self.max_lag = max(self.max_lag, (due - seq) / self.rate)
                while seq < due and not self._halt.is_set():
                    self._write_one(seq)
                    seq += 1
                self._halt.wait(0.005)
        except BaseException as exc:  # reported by the main thread
            self.error = exc
        finally:
            self.stopped_at = time.monotonic()


# --------------------------------------------------------------------------- latency probe


@dataclass
class Probe:
    name: str
    renamed: float
    latency: float | None = None  # seconds from rename to the first successful HEAD
    timed_out: bool = False


def _probe(client: S3Client, probe: Probe) -> None:
    key = f"{PREFIX}/{probe.name}"
    deadline = probe.renamed + PROBE_TIMEOUT
    while time.monotonic() < deadline:
        try:
            client.head_object(Bucket=BUCKET, Key=key)
        except ClientError:
            time.sleep(PROBE_POLL)
            continue
        except Exception:  # connection hiccup: keep polling until the deadline
            time.sleep(PROBE_POLL)
            continue
        probe.latency = time.monotonic() - probe.renamed
        return
    probe.timed_out = True


# --------------------------------------------------------------------------- samples


@dataclass
class Sample:
    t: float  # seconds since feeding started
    phase: str  # "feed" or "drain"
    rss_kib: int
    fds: int
    threads: int
    cpu: float  # daemon CPU seconds so far
    backlog: int  # files in new/
    fed: int
    uploaded: int | None  # the daemon's spool_tool_files_uploaded_total
    probe: Probe | None = None


@dataclass
class Outcome:
    samples: list[Sample] = field(default_factory=list)
    fed: int = 0
    feed_seconds: float = 0.0
    max_feed_lag: float = 0.0
    drain_seconds: float | None = None  # None: new/ was not empty at the drain timeout
    exit_code: int | None = None
    stop_seconds: float = 0.0
    in_bucket: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: int = 0
    left_in_new: int = 0
    problems: list[str] = field(default_factory=list)


def take_sample(pid: int, new: Path, t: float, phase: str, fed: int, metrics_port: int) -> Sample:
    fields = _status_fields(pid)
    return Sample(
        t=t,
        phase=phase,
        rss_kib=int(fields["VmRSS"].split()[0]),
        fds=len(os.listdir(f"/proc/{pid}/fd")),
        threads=int(fields["Threads"]),
        cpu=_cpu_seconds(pid),
        backlog=_count_files(new),
        fed=fed,
        uploaded=_scrape_uploaded(metrics_port),
    )


# --------------------------------------------------------------------------- the run


def _wait_for_metrics(proc: subprocess.Popen[bytes], port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"spool_tool exited with status {proc.returncode} at start")
        if _scrape_uploaded(port) is not None:
            return
        time.sleep(0.1)
    raise RuntimeError(f"spool_tool /metrics on port {port} did not answer in {timeout:.0f} s")


def _list_keys(client: S3Client) -> set[str]:
    keys: set[str] = set()
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=BUCKET, Prefix=f"{PREFIX}/"
    ):
        keys.update(obj.get("Key", "") for obj in page.get("Contents", []))
    return keys


def _stop_daemon(proc: subprocess.Popen[bytes], out: Outcome) -> None:
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        out.exit_code = proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        out.problems.append(f"daemon still running {STOP_TIMEOUT:.0f} s after SIGTERM: killed")
        proc.kill()
        out.exit_code = proc.wait()
    out.stop_seconds = time.monotonic() - began


def soak(args: argparse.Namespace, work: Path) -> Outcome:
    out = Outcome()
    spool = work / "spool"
    new = spool / "new"
    new.mkdir(parents=True)
    duration = args.minutes * 60.0
    with SeaweedServer(work / "seaweed", buckets=[BUCKET]) as server:
        _log(f"seaweed at {server.endpoint_url} (started in {server.start_seconds:.1f} s)")
        client = server.client(config=Config(retries={"max_attempts": 2, "mode": "standard"}))
        metrics_port = free_port()
        cmd = [
            str(spool_tool_binary()), "--watch", "--interval", str(WATCH_INTERVAL),
            "--delete-after", str(DELETE_AFTER), "-q", "--metrics-port", str(metrics_port),
            "--engine", args.engine, str(spool), f"s3://{BUCKET}/{PREFIX}/",
        ]  # fmt: skip
        log_path = work / "spool_tool.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                cmd,
                env=child_env(server.env()),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            _wait_for_metrics(proc, metrics_port)
            _log(f"spool_tool pid {proc.pid}, /metrics on {metrics_port}; feeding {duration:.0f} s")
            _run_phases(args, proc, new, spool, server, metrics_port, duration, out)
            _stop_daemon(proc, out)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        _verify(client, new, out)
        if out.exit_code != 0:
            out.problems.append(f"daemon exit status {out.exit_code} (expected 0)")
            tail = log_path.read_bytes()[-4000:].decode(errors="replace")
            out.problems.append(f"spool_tool log tail:\n```\n{tail}\n```")
    return out


def _run_phases(
    args: argparse.Namespace,
    proc: subprocess.Popen[bytes],
    new: Path,
    spool: Path,
    server: SeaweedServer,
    metrics_port: int,
    duration: float,
    out: Outcome,
) -> None:
    feeder = Feeder(spool, args.rate)
    probe_client = server.client(config=Config(retries={"max_attempts": 1, "mode": "standard"}))
    probes: list[threading.Thread] = []
    feeder.start()
    while feeder.started_at == 0.0:
        time.sleep(0.001)
    t0 = feeder.started_at
    tick = 0
    try:
        # Feeding: a sample every SAMPLE_EVERY s, and one file followed to S3 per sample.
        while True:
            target = t0 + tick * SAMPLE_EVERY
            time.sleep(max(0.0, target - time.monotonic()))
            if proc.poll() is not None:
                out.problems.append(f"daemon exited early with status {proc.returncode}")
                break
            if feeder.error is not None:
                raise RuntimeError(f"feeder failed: {feeder.error!r}")
            now = time.monotonic()
            if now - t0 >= duration:
                break
            sample = take_sample(proc.pid, new, now - t0, "feed", feeder.fed, metrics_port)
            latest = feeder.latest()
            if latest is not None:
                sample.probe = Probe(*latest)
                thread = threading.Thread(target=_probe, args=(probe_client, sample.probe))
                thread.start()
                probes.append(thread)
            out.samples.append(sample)
            _print_live(out.samples)
            tick += 1
    finally:
        feeder.stop()
        feeder.join()
    out.fed = feeder.fed
    out.feed_seconds = feeder.stopped_at - t0
    out.max_feed_lag = feeder.max_lag
    _log(f"fed {out.fed:,} files in {out.feed_seconds:.1f} s; draining")
    # Drain: until new/ is empty and the daemon counted every file uploaded.
    drain_start = time.monotonic()
    next_sample = t0 + tick * SAMPLE_EVERY
    while proc.poll() is None:
        now = time.monotonic()
        uploaded = _scrape_uploaded(metrics_port)
        if _count_files(new) == 0 and uploaded is not None and uploaded >= out.fed:
            out.drain_seconds = now - drain_start
            break
        if now - drain_start > args.drain_timeout:
            out.problems.append(
                f"new/ not drained {args.drain_timeout:.0f} s after feeding stopped"
            )
            break
        if now >= next_sample:
            sample = take_sample(proc.pid, new, now - t0, "drain", out.fed, metrics_port)
            out.samples.append(sample)
            _print_live(out.samples)
            next_sample += SAMPLE_EVERY
        time.sleep(0.1)
    if proc.poll() is None:  # the state right before SIGTERM
        now = time.monotonic()
        sample = take_sample(proc.pid, new, now - t0, "end", out.fed, metrics_port)
        out.samples.append(sample)
        _print_live(out.samples)
    for thread in probes:
        thread.join()


def _verify(client: S3Client, new: Path, out: Outcome) -> None:
    keys = _list_keys(client)
    expected = {f"{PREFIX}/soak-{seq:09d}.dat" for seq in range(out.fed)}
    out.in_bucket = len(keys)
    out.missing = sorted(k.removeprefix(f"{PREFIX}/") for k in expected - keys)
    out.unexpected = len(keys - expected)
    out.left_in_new = _count_files(new)
    if out.missing:
        out.problems.append(
            f"{len(out.missing):,} of {out.fed:,} fed files not in the bucket "
            f"(e.g. {', '.join(out.missing[:3])})"
        )
    if out.unexpected:
        out.problems.append(f"{out.unexpected:,} unexpected keys in the bucket")


# --------------------------------------------------------------------------- report

HEADER = (
    "|      t s | phase |  RSS MiB | fds | threads | CPU % |  backlog |       fed "
    "|  uploaded | latency s |"
)
RULE = (
    "|---------:|:------|---------:|----:|--------:|------:|---------:|----------:"
    "|----------:|----------:|"
)


def _fmt_latency(probe: Probe | None) -> str:
    if probe is None:
        return "-"
    if probe.timed_out:
        return "timeout"
    if probe.latency is None:
        return "..."
    return f"{probe.latency:.3f}"


def _row(sample: Sample, cpu_pct: float | None) -> str:
    uploaded = "?" if sample.uploaded is None else f"{sample.uploaded:,}"
    cpu = "-" if cpu_pct is None else f"{cpu_pct:.0f}"
    return (
        f"| {sample.t:8.1f} | {sample.phase:<5} | {sample.rss_kib / 1024:8.1f} | "
        f"{sample.fds:3d} | {sample.threads:7d} | {cpu:>5} | {sample.backlog:8,} | "
        f"{sample.fed:9,} | {uploaded:>9} | {_fmt_latency(sample.probe):>9} |"
    )


def _cpu_pct(prev: Sample | None, sample: Sample) -> float | None:
    if prev is None or sample.t <= prev.t:
        return None
    return 100.0 * (sample.cpu - prev.cpu) / (sample.t - prev.t)


def _print_live(samples: list[Sample]) -> None:
    """Print the newest sample to stderr (the header before the first one)."""
    if len(samples) == 1:
        print(HEADER, file=sys.stderr)
    prev = samples[-2] if len(samples) > 1 else None
    print(_row(samples[-1], _cpu_pct(prev, samples[-1])), file=sys.stderr, flush=True)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def _window(samples: list[Sample], duration: float) -> tuple[list[Sample], list[Sample]]:
    feed = [s for s in samples if s.phase == "feed"]
    first = [s for s in feed if s.t < WINDOW]
    last = [s for s in feed if s.t >= max(duration - WINDOW, 0.0)]
    return first, last


def verdict(out: Outcome, rate: float, duration: float) -> list[Check]:
    first, last = _window(out.samples, duration)
    checks: list[Check] = []
    if not first or not last:
        return [Check("samples", False, "no samples taken while feeding")]
    rss0 = _median([s.rss_kib / 1024 for s in first])
    rss1 = _median([s.rss_kib / 1024 for s in last])
    growth = rss1 - rss0
    pct = 100.0 * growth / rss0 if rss0 else 0.0
    checks.append(
        Check(
            "RSS growth",
            not (pct > RSS_GROWTH_PCT or growth > RSS_GROWTH_MIB),
            f"first-minute median {rss0:.1f} MiB -> last-minute median {rss1:.1f} MiB "
            f"({growth:+.1f} MiB, {pct:+.1f} %; limit {RSS_GROWTH_PCT:.0f} % / "
            f"{RSS_GROWTH_MIB:.0f} MiB)",
        )
    )
    for name, attr, slack in (("fds", "fds", FD_SLACK), ("threads", "threads", THREAD_SLACK)):
        v0 = [getattr(s, attr) for s in first]
        v1 = [getattr(s, attr) for s in last]
        m0, m1 = _median(v0), _median(v1)
        checks.append(
            Check(
                f"{name} stable",
                m1 <= m0 + slack,
                f"first minute median {m0:.0f} (range {min(v0)}-{max(v0)}), last minute median "
                f"{m1:.0f} (range {min(v1)}-{max(v1)}); limit: last median <= first median "
                f"+ {slack} (transient peaks come from cleanup and connection churn)",
            )
        )
    bl_first = max(s.backlog for s in first)
    bl_last = max(s.backlog for s in last)
    bound = max(2 * bl_first, int(rate * BACKLOG_FLOOR_SECONDS))
    checks.append(
        Check(
            "backlog bounded",
            bl_last <= bound and out.drain_seconds is not None,
            f"max first minute {bl_first:,}, max last minute {bl_last:,} (limit {bound:,} = "
            f"max(2 x first-minute max, {BACKLOG_FLOOR_SECONDS:.0f} s of feed)); "
            + (
                f"new/ empty {out.drain_seconds:.1f} s after feeding stopped"
                if out.drain_seconds is not None
                else "new/ never drained"
            ),
        )
    )
    checks.append(
        Check(
            "clean exit",
            out.exit_code == 0,
            f"exit status {out.exit_code} {out.stop_seconds:.1f} s after SIGTERM",
        )
    )
    checks.append(
        Check(
            "all delivered",
            not out.missing and out.in_bucket >= out.fed,
            f"{out.in_bucket:,} objects in s3://{BUCKET}/{PREFIX}/ for {out.fed:,} fed files "
            f"({len(out.missing):,} missing, {out.unexpected:,} unexpected); "
            f"{out.left_in_new:,} left in new/",
        )
    )
    return checks


def render(args: argparse.Namespace, out: Outcome, checks: list[Check], stamp: str) -> str:
    duration = args.minutes * 60.0
    lines = [
        f"# Soak {stamp}",
        "",
        (
            f"`python -m bench.soak --minutes {args.minutes:g} --rate {args.rate:g} "
            f"--engine {args.engine}`"
        ),
        "",
        (
            f"Daemon: `spool_tool --watch --interval {WATCH_INTERVAL} "
            f"--delete-after {DELETE_AFTER} -q --metrics-port P --engine {args.engine} "
            f"SPOOL s3://{BUCKET}/{PREFIX}/` on SeaweedFS (127.0.0.1). "
            f"Machine: {os.cpu_count()} CPUs, load average at the end "
            f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}."
        ),
        "",
        (
            f"Fed {out.fed:,} files of {FILE_SIZE} B in {out.feed_seconds:.1f} s "
            f"({out.fed / out.feed_seconds if out.feed_seconds else 0:.0f}/s, "
            f"target {args.rate:g}/s; "
            f"feeder at most {out.max_feed_lag:.2f} s behind schedule)."
        ),
        "",
        "## Verdict",
        "",
        f"**{'PASS' if all(c.ok for c in checks) else 'FAIL'}**",
        "",
        "| check | result | detail |",
        "|:--|:--|:--|",
        *(f"| {c.name} | {'ok' if c.ok else 'FLAG'} | {c.detail} |" for c in checks),
        "",
    ]
    latencies = sorted(
        s.probe.latency for s in out.samples if s.probe is not None and s.probe.latency is not None
    )
    timeouts = sum(1 for s in out.samples if s.probe is not None and s.probe.timed_out)
    if latencies:
        p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]
        lines += [
            (
                f"Upload latency (rename into new/ -> HEAD finds the object, HEAD every "
                f"{PROBE_POLL * 1000:.0f} ms, {len(latencies)} probes, {timeouts} timed out): "
                f"median {statistics.median(latencies):.3f} s, p95 {p95:.3f} s, "
                f"max {latencies[-1]:.3f} s."
            ),
            "",
        ]
    first, last = _window(out.samples, duration)
    if first and last:
        lines += [
            "| window | RSS MiB (median) | fds (median) | threads (median) | backlog (median) |",
            "|:--|--:|--:|--:|--:|",
        ]
        for label, group in (("first minute", first), ("last minute", last)):
            lines.append(
                f"| {label} | {_median([s.rss_kib / 1024 for s in group]):.1f} | "
                f"{_median([float(s.fds) for s in group]):.0f} | "
                f"{_median([float(s.threads) for s in group]):.0f} | "
                f"{_median([float(s.backlog) for s in group]):.0f} |"
            )
        lines.append("")
    if out.problems:
        lines += ["## Problems", "", *(f"- {p}" for p in out.problems), ""]
    lines += [
        "## Samples",
        "",
        (
            "CPU % is the daemon's CPU time over the interval before the sample (100 = one core); "
            "uploaded is the daemon's `spool_tool_files_uploaded_total`; latency is the file "
            "renamed into new/ last before the sample."
        ),
        "",
        HEADER,
        RULE,
    ]
    prev: Sample | None = None
    for s in out.samples:
        lines.append(_row(s, _cpu_pct(prev, s)))
        prev = s
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- command line


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description="Soak spool_tool --watch with a steady trickle of 1 KiB files on SeaweedFS.",
    )
    parser.add_argument(
        "--minutes", type=float, default=10.0, help="feeding time (default: %(default)s)"
    )
    parser.add_argument(
        "--rate", type=float, default=500.0, help="files per second (default: %(default)s)"
    )
    parser.add_argument(
        "--engine",
        choices=["auto", "obstore", "boto3"],
        default="auto",
        help="spool_tool --engine (default: %(default)s)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=120.0,
        help="seconds the daemon gets to empty new/ after feeding stops (default: %(default)s)",
    )
    parser.add_argument(
        "--tmpdir", type=Path, default=None, help="where the spool and server data go"
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=BENCH_DIR / "results",
        help="where soak-<timestamp>.md is written (default: bench/results)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, data)")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.rate <= 0:
        parser.error("--minutes and --rate must be > 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    with contextlib.ExitStack() as stack:
        if args.keep:
            work = Path(tempfile.mkdtemp(prefix="soak-", dir=args.tmpdir))
            _log(f"keeping {work}")
        else:
            work = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="soak-", dir=args.tmpdir))
            )
        try:
            out = soak(args, work)
        except KeyboardInterrupt:
            _log("interrupted")
            return 130
    checks = verdict(out, args.rate, args.minutes * 60.0)
    text = render(args, out, checks, stamp)
    print(text)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    path = args.results_dir / f"soak-{stamp}.md"
    path.write_text(text)
    _log(f"report: {path}")
    return 0 if all(c.ok for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
