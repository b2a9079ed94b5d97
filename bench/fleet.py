"""Fleet simulation: N spool_tool agents, one bucket, an S3-like per-prefix request-rate limit.

    python -m bench.fleet --agents 4 --files 200                 # date-first keys
    python -m bench.fleet --agents 4 --keys host                 # host-first keys
    python -m bench.fleet --agents 16 --keys uuid --partition-chars 2
    python -m bench.fleet --agents 4 --keys hash --mode fixed    # spread keys, fixed limit
    python -m bench.fleet --agents 4 -- --engine boto3 --max-attempts 3   # spool_tool options

Starts one SeaweedFS server (bucket ``fleet``) and a ``ThrottlingProxy`` in front of it
(``bench/throttle_proxy.py``: ``503 SlowDown`` above ``--rate`` requests/s per partition). Each
agent is a separate ``spool_tool`` process with its own spool (``--files`` files of ``--size``
bytes, named ``aNN-NNNNNN.dat``) and its own host name (``--hostname fleet-NN``, so no root
is needed); all agents start together and run once. Agents whose
spool still has files (uploads that failed under throttling exit 1 and stay in ``new/``) run
again, up to ``--rounds`` rounds: that is how a cron fleet recovers.

Reported: total throughput of round 1 (files / wall seconds), requests per file (PUT and POST
at the proxy over files), throttled requests, Jain's fairness index over the agents' files/s in
round 1 (1.0 = equal shares, 1/N = one agent got everything) and an exactly-once check: every
file is one object (by name), nothing else is in the bucket, and every spool's ``new/`` is
empty. Exit status 0 when the exactly-once check passed.

Key presets (``--keys``): ``date`` = ``{m_YYYY}{m_MM}{m_DD}/{hostname}/{fname}`` (every agent
writes one partition), ``host`` = ``{hostname}/{m_YYYY}{m_MM}{m_DD}/{fname}`` (one partition
per agent), ``uuid`` = ``{uuid4}/{fname}`` (use with ``--partition-chars 2``: 256 partitions,
what a hash token gives), ``hash`` = ``{fname_hash}/{m_YYYY}{m_MM}{m_DD}/{fname}`` (256
partitions by the file name's hash); ``--template`` overrides the preset.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench.throttle_proxy import ThrottlingProxy, agent_of
from bench.tools import child_env, spool_tool_binary
from devtools.seaweed import SeaweedServer

if TYPE_CHECKING:
    from collections.abc import Sequence

BUCKET = "fleet"
PRESETS = {
    "date": "{m_YYYY}{m_MM}{m_DD}/{hostname}/{fname}",
    "host": "{hostname}/{m_YYYY}{m_MM}{m_DD}/{fname}",
    "uuid": "{uuid4}/{fname}",
    "hash": "{fname_hash}/{m_YYYY}{m_MM}{m_DD}/{fname}",
}
MAX_AGENTS = 16


def _log(msg: str) -> None:
    print(f"[fleet] {msg}", file=sys.stderr, flush=True)


@dataclass
class Agent:
    index: int
    spool: Path
    host: str
    runs: int = 0
    exits: tuple[int, ...] = ()
    first_seconds: float = 0.0
    first_uploaded: int = 0

    @property
    def waiting(self) -> int:
        return sum(1 for _ in (self.spool / "new").iterdir())


def jain_index(values: Sequence[float]) -> float:
    """(sum x)^2 / (n * sum x^2): 1.0 when every agent got the same share."""
    squares = sum(v * v for v in values)
    return (sum(values) ** 2) / (len(values) * squares) if squares else 1.0


def make_spool(root: Path, index: int, files: int, size: int) -> Path:
    spool = root / f"agent-{index:02d}"
    new = spool / "new"
    new.mkdir(parents=True)
    body = os.urandom(size)
    for n in range(files):
        (new / f"a{index:02d}-{n:06d}.dat").write_bytes(body)
    return spool


def agent_command(agent: Agent, args: argparse.Namespace, endpoint: str) -> list[str]:
    return [
        str(spool_tool_binary()),
        "-q",
        "--hold-for", "0",
        "--no-cleanup",
        "--concurrency", str(args.concurrency),
        "--concurrency-mode", args.mode,
        "--endpoint-url", endpoint,
        "--addressing-style", "path",
        "--format", args.template,
        "--hostname", agent.host,
        *args.spool_tool_args,
        str(agent.spool),
        f"s3://{BUCKET}/",
    ]  # fmt: skip


def run_round(
    agents: Sequence[Agent], args: argparse.Namespace, endpoint: str, env: dict[str, str]
) -> float:
    """Start every agent at once, wait for all; returns the round's wall seconds."""
    started = time.monotonic()
    procs = []
    for agent in agents:
        log = (agent.spool.parent / f"agent-{agent.index:02d}.log").open("ab")
        before = agent.waiting
        proc = subprocess.Popen(
            agent_command(agent, args, endpoint), env=env, stdout=log, stderr=log
        )
        procs.append((agent, proc, log, before))
    for agent, proc, log, before in procs:
        try:
            status = proc.wait(timeout=max(1.0, args.timeout - (time.monotonic() - started)))
        except subprocess.TimeoutExpired:
            proc.kill()
            status = proc.wait()
        log.close()
        if agent.runs == 0:
            agent.first_seconds = time.monotonic() - started
            agent.first_uploaded = before - agent.waiting
        agent.runs += 1
        agent.exits = (*agent.exits, status)
    return time.monotonic() - started


def check_exactly_once(sw: SeaweedServer, agents: Sequence[Agent], files: int) -> dict[str, int]:
    """Objects per file name across the bucket (listed directly, not through the proxy)."""
    names: Counter[str] = Counter()
    others = 0
    paginator = sw.client().get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=BUCKET):
        for obj in page.get("Contents", []):
            name = obj["Key"].rsplit("/", 1)[-1]
            if agent_of(obj["Key"]) is None:
                others += 1
            names[name] += 1
    expected = {f"a{a.index:02d}-{n:06d}.dat" for a in agents for n in range(files)}
    return {
        "objects": sum(names.values()),
        "files": len(expected),
        "missing": len(expected - set(names)),
        "duplicated": sum(1 for name in expected if names[name] > 1),
        "unexpected": others + len(set(names) - expected),
        "left_in_new": sum(a.waiting for a in agents),
    }


def summarise(
    args: argparse.Namespace,
    agents: Sequence[Agent],
    proxy: ThrottlingProxy,
    first_wall: float,
    check: dict[str, int],
) -> dict[str, object]:
    files = len(agents) * args.files
    writes = sum(
        c.requests["PUT"] + c.requests["POST"] for k, c in proxy.agents.items() if k is not None
    )
    rates = [a.first_uploaded / a.first_seconds if a.first_seconds else 0.0 for a in agents]
    return {
        "agents": len(agents),
        "files_per_agent": args.files,
        "size": args.size,
        "template": args.template,
        "rate_per_partition": args.rate,
        "partition_chars": args.partition_chars,
        "concurrency": args.concurrency,
        "mode": args.mode,
        "spool_tool_args": args.spool_tool_args,
        "round1_wall_s": round(first_wall, 2),
        "round1_uploaded": sum(a.first_uploaded for a in agents),
        "round1_files_per_s": round(sum(a.first_uploaded for a in agents) / first_wall, 1),
        "rounds": max(a.runs for a in agents),
        "exit_codes": {a.host: list(a.exits) for a in agents},
        "write_requests": writes,
        "requests_per_file": round(writes / files, 3),
        "throttled": proxy.throttled,
        "partitions": len(proxy.partitions),
        "jain_fairness": round(jain_index(rates), 3),
        "agent_files_per_s": [round(r, 1) for r in rates],
        "exactly_once": check,
        "ok": check["missing"] == check["duplicated"] == check["unexpected"] == 0
        and check["left_in_new"] == 0,
    }


TABLE_HEAD = (
    "| agents | keys | mode | R/s per partition | round-1 files/s | requests/file | throttled "
    "| Jain | rounds | exactly once |\n|---|---|---|---|---|---|---|---|---|---|"
)


def markdown(result: dict[str, object]) -> str:
    check = result["exactly_once"]
    assert isinstance(check, dict)
    verdict = "yes" if result["ok"] else "NO"
    counts = f"{check['objects']} objects / {check['files']} files"
    damage = f"{check['duplicated']} duplicated, {check['missing']} missing"
    cells = [
        result["agents"],
        f"`{result['template']}`",
        result["mode"],
        result["rate_per_partition"],
        result["round1_files_per_s"],
        result["requests_per_file"],
        result["throttled"],
        result["jain_fairness"],
        result["rounds"],
        f"{verdict} ({counts}, {damage})",
    ]
    return TABLE_HEAD + "\n| " + " | ".join(str(c) for c in cells) + " |"


def run(args: argparse.Namespace) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="fleet-", dir=args.work_dir))
    try:
        with SeaweedServer(work / "sw", buckets=[BUCKET]) as sw:
            agents = [
                Agent(i, make_spool(work, i, args.files, args.size), f"fleet-{i:02d}")
                for i in range(args.agents)
            ]
            proxy = ThrottlingProxy(
                sw.endpoint_url, rate=args.rate, partition_chars=args.partition_chars
            )
            try:
                env = child_env(sw.env())
                env.update({"AWS_ENDPOINT_URL": proxy.url, "AWS_ENDPOINT_URL_S3": proxy.url})
                _log(f"{args.agents} agents x {args.files} files, R={args.rate}/s per partition")
                first_wall = run_round(agents, args, proxy.url, env)
                for _ in range(args.rounds - 1):
                    left = [a for a in agents if a.waiting]
                    if not left:
                        break
                    _log(f"round {left[0].runs + 1}: {len(left)} agents still have files")
                    run_round(left, args, proxy.url, env)
                check = check_exactly_once(sw, agents, args.files)
                return summarise(args, agents, proxy, first_wall, check)
            finally:
                proxy.stop()
    finally:
        if args.keep:
            _log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fleet",
        description="N spool_tool agents into one bucket through a per-prefix rate limit.",
        epilog="Arguments after -- are passed to every spool_tool agent.",
    )
    parser.add_argument("--agents", type=int, default=4, help="1..16 (default 4)")
    parser.add_argument("--files", type=int, default=200, help="files per agent (default 200)")
    parser.add_argument("--size", type=int, default=1024, help="bytes per file (default 1024)")
    parser.add_argument(
        "--rate", type=float, default=100.0, help="requests/s per partition (default 100)"
    )
    parser.add_argument("--partition-chars", type=int, default=0, help="0: the whole segment")
    parser.add_argument("--keys", choices=sorted(PRESETS), default="date")
    parser.add_argument("--template", help="a --format template instead of the preset")
    parser.add_argument("--concurrency", type=int, default=16, help="per agent (default 16)")
    parser.add_argument(
        "--mode", choices=("adaptive", "fixed"), default="adaptive",
        help="the agents' --concurrency-mode (default adaptive)",
    )  # fmt: skip
    parser.add_argument("--rounds", type=int, default=3, help="at most (default 3)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per round")
    parser.add_argument("--json", action="store_true", help="print the raw JSON record too")
    parser.add_argument("--keep", action="store_true", help="keep the spools and logs")
    parser.add_argument("--work-dir", default=None, help="where the temp dir goes")
    raw = list(argv if argv is not None else sys.argv[1:])
    split = raw.index("--") if "--" in raw else len(raw)
    args = parser.parse_args(raw[:split])
    args.spool_tool_args = raw[split + 1 :]
    args.template = args.template or PRESETS[args.keys]
    if not 1 <= args.agents <= MAX_AGENTS:
        parser.error(f"--agents must be 1..{MAX_AGENTS}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    print(markdown(result))
    if args.json:
        print(json.dumps(result, indent=2))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
