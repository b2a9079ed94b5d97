"""Probe ``spool_tool.throttle`` before it is wired in: adaptive vs fixed concurrency, in-process.

    python -m bench.gate_probe --agents 4 --files 300 --rate 100

N agents as threads of one process, each with its own ``ConcurrencyGate``, its own obstore
store (``max_retries=0``: every attempt is ours) and ``--concurrency`` worker threads, PUT
``--files`` 1 KiB objects each into one partition of a SeaweedFS bucket through the
``ThrottlingProxy`` (``--rate`` requests/s per partition). Each request goes through
``send_with_retries``; ``fixed`` uses a gate that never lowers, which is today's behaviour with
the retries made visible. Reports PUTs per object, throttled answers,
objects that failed after ``--max-attempts``, objects/s and the gates' final limits.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.throttle_proxy import ThrottlingProxy
from devtools.seaweed import SeaweedServer
from spool_tool.throttle import ConcurrencyGate, RetryPolicy, is_throttling, send_with_retries

_CODE = re.compile(r"<Code>([^<]+)</Code>")
_STATUS = re.compile(r"non-2xx status code: (\d{3})")


class FixedGate(ConcurrencyGate):
    """Today's behaviour: throttling answers are counted, the limit stays."""

    def on_throttled(self) -> None:
        with self._cond:
            self.throttled_total += 1


def _throttled(exc: BaseException) -> bool:
    text = str(exc)
    code = m.group(1) if (m := _CODE.search(text)) else None
    status = int(m.group(1)) if (m := _STATUS.search(text)) else None
    return is_throttling(code, status)


def _store(sw: SeaweedServer, url: str) -> Any:
    from obstore.store import S3Store  # noqa: PLC0415

    return S3Store(
        "probe",
        config={
            "endpoint": url,
            "region": "us-east-1",
            "access_key_id": sw.access_key,
            "secret_access_key": sw.secret_key,
            "virtual_hosted_style_request": False,
        },
        client_options={"allow_http": True},
        retry_config={
            "max_retries": 0,
            "retry_timeout": timedelta(seconds=30),
            "backoff": {
                "init_backoff": timedelta(milliseconds=100),
                "max_backoff": timedelta(seconds=20),
                "base": 2,
            },
        },
    )


def run_agent(
    index: int, store: Any, gate: ConcurrencyGate, args: argparse.Namespace, failed: list[int]
) -> None:
    import obstore  # noqa: PLC0415

    names = iter(range(args.files))
    lock = threading.Lock()
    stop = threading.Event()
    policy = RetryPolicy(max_attempts=args.max_attempts)

    def work() -> None:
        while True:
            with lock:
                n = next(names, None)
            if n is None:
                return
            key = f"day/a{index:02d}-{n:06d}.dat"

            def put(key: str = key) -> object:
                return obstore.put(store, key, b"x" * 1024, use_multipart=False)

            try:
                send_with_retries(
                    gate,
                    put,
                    is_throttled=_throttled,
                    is_retryable=lambda _exc: True,
                    policy=policy,
                    stop=stop,
                )
            except Exception:
                with lock:
                    failed[index] += 1

    workers = [threading.Thread(target=work) for _ in range(args.concurrency)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def probe(sw: SeaweedServer, args: argparse.Namespace, mode: str) -> str:
    with ThrottlingProxy(sw.endpoint_url, rate=args.rate) as proxy:
        gates = [
            FixedGate(args.concurrency) if mode == "fixed" else ConcurrencyGate(args.concurrency)
            for _ in range(args.agents)
        ]
        failed = [0] * args.agents
        agents = [
            threading.Thread(target=run_agent, args=(i, _store(sw, proxy.url), g, args, failed))
            for i, g in enumerate(gates)
        ]
        started = time.monotonic()
        for agent in agents:
            agent.start()
        for agent in agents:
            agent.join()
        wall = time.monotonic() - started
        puts = sum(c.requests["PUT"] for k, c in proxy.agents.items() if k is not None)
    objects = args.agents * args.files
    return (
        f"| {mode} | {args.agents} | {args.concurrency} | {args.rate:g} "
        f"| {(objects - sum(failed)) / wall:.1f} | {puts / objects:.3f} | {proxy.throttled} "
        f"| {sum(failed)} | {[g.limit for g in gates]} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gate_probe")
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--max-attempts", type=int, default=5)
    parser.add_argument("--modes", default="fixed,adaptive")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gate-probe-") as tmp:
        sw = SeaweedServer(Path(tmp) / "sw", buckets=["probe"])
        with sw:
            print("| mode | agents | max concurrency | R/s | objects/s | PUTs/object "
                  "| throttled | failed | final limits |")  # fmt: skip
            print("|---|---|---|---|---|---|---|---|---|")
            for mode in args.modes.split(","):
                print(probe(sw, args, mode), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
