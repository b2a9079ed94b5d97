"""Interleaved A/B of spool_tool variants (and peers) on one SeaweedFS server.

    python -m bench.ab W3 4 "q::-q --no-cleanup" aws "p16:SPOOL_TOOL_PART_SIZE=16MiB:-q"
    python -m bench.ab W1 5 base "src:PYTHONPATH=/path/to/worktree/src:" s5cmd

Each variant is ``NAME[:ENV=V,ENV=V[:ARGS]]``. A NAME that is a peer (``s5cmd``, ``aws``,
``rclone``, optionally ``peer-anything``) runs that peer's ``bench.run`` command line; any other
runs ``spool_tool ARGS --endpoint-url URL SPOOL s3://BUCKET/data/`` with the extra environment
(``PYTHONPATH`` pointing at another checkout's ``src`` compares code). Round by round, every
variant runs once on a freshly generated workload, in the order given; per run the tool's wait4
CPU and the server's CPU are printed, then medians. Shorter than ``bench.run`` (no report file,
no delivery check beyond counting objects) and meant for one question at a time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bench.measure import process_cpu_seconds, run_child
from bench.tools import (
    PEERS,
    Target,
    child_env,
    command,
    compile_spool_tool,
    ensure_tools_venv,
    spool_tool_binary,
)
from bench.workloads import FULL, prepare_run

PREFIX = "data"


@dataclass
class Variant:
    name: str
    env: dict[str, str]
    args: list[str]
    rows: list[tuple[float, float, float, float, int]] = field(default_factory=list)

    @classmethod
    def parse(cls, spec: str) -> Variant:
        name, envs, args = (*spec.split(":", 2), "", "")[:3]
        env = dict(kv.split("=", 1) for kv in envs.split(",") if kv)
        return cls(name, env, args.split())

    @property
    def peer(self) -> str | None:
        head = self.name.split("-")[0]
        return head if head in PEERS else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workload", choices=sorted(FULL))
    parser.add_argument("rounds", type=int)
    parser.add_argument("variants", nargs="+")
    parser.add_argument("--tmpdir", default=None)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from devtools.seaweed import SeaweedServer  # noqa: PLC0415 - needs the repo on sys.path

    workload = FULL[args.workload]
    variants = [Variant.parse(v) for v in args.variants]
    if any(v.peer for v in variants):
        ensure_tools_venv()  # bench.run's first-use install of the peers, not only bench.run's
    compile_spool_tool()
    root = Path(tempfile.mkdtemp(dir=args.tmpdir))
    kept = False
    try:
        with SeaweedServer(root / "seaweed") as server:
            client = server.client()
            env = child_env(server.env())
            for rnd in range(args.rounds):
                for v in variants:
                    bucket = f"ab-{v.name.lower().replace('_', '-')}-{rnd}"
                    spool = root / f"{v.name}-{rnd}" / "spool"
                    prepare_run(client, spool, bucket, workload)
                    url = server.endpoint_url
                    if v.peer is not None:
                        target = Target(url, server.access_key, server.secret_key, bucket, PREFIX)
                        cmd = command(v.peer, spool / "new", spool, target)
                    else:
                        dest = f"s3://{bucket}/{PREFIX}/"
                        binary = str(spool_tool_binary())
                        cmd = [binary, *v.args, "--endpoint-url", url, str(spool), dest]
                    before = process_cpu_seconds(server.pid) or 0.0
                    out = run_child(
                        cmd, env={**env, **v.env}, log_path=spool.parent / "log", timeout=900
                    )
                    server_cpu = (process_cpu_seconds(server.pid) or 0.0) - before
                    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
                    objects = sum(len(page.get("Contents", [])) for page in pages)
                    v.rows.append((out.wall, out.user, out.sys, server_cpu, objects))
                    print(
                        f"round {rnd} {v.name:14s} wall {out.wall:6.2f} client CPU "
                        f"{out.user + out.sys:6.2f} (user {out.user:.2f} sys {out.sys:.2f}) "
                        f"server CPU {server_cpu:6.2f} objects {objects} exit {out.returncode} "
                        f"load {os.getloadavg()[0]:.2f}",
                        flush=True,
                    )
                    if objects != workload.count or out.returncode != 0:
                        print(f"  {v.name}: incomplete run, log kept in {spool.parent}")
                        kept = True
                    else:
                        shutil.rmtree(spool.parent)
    finally:
        shutil.rmtree(root / "seaweed" if kept else root, ignore_errors=True)
    _summary(variants, workload.count)
    return 0


def _summary(variants: list[Variant], files: int) -> None:
    print("medians:")
    first = statistics.median(r[0] for r in variants[0].rows)
    for v in variants:
        wall = statistics.median(r[0] for r in v.rows)
        cpu = statistics.median(r[1] + r[2] for r in v.rows)
        server = statistics.median(r[3] for r in v.rows)
        print(
            f"{v.name:14s} wall {wall:6.2f} s  client CPU {cpu:6.2f} s "
            f"({1000 * cpu / files:.3f} ms/file)  server CPU {server:6.2f} s "
            f"({1000 * server / files:.3f} ms/file)  {first / wall:.2f}x "
            f"the first variant's speed"
        )


if __name__ == "__main__":
    sys.exit(main())
