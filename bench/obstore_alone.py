"""obstore alone, no spool_tool code: the CPU floor of the obstore engine per small PUT.

    python -m devtools.seaweed run --bucket bench -- \
        python -m bench.obstore_alone --mode sync --files 5000 --size 4096 --concurrency 64

``sync``: the engine's way, ``obstore.put`` from ``--concurrency`` Python threads taking keys
from one shared iterator. ``async``: ``obstore.put_async`` from one asyncio loop, at most
``--concurrency`` in flight (the "batch engine" that was considered). Same store settings as
the engine (CRC64NVME, UNSIGNED-PAYLOAD, no retries, path style). Prints wall, files/s and the
process's CPU per file from ``getrusage`` (interpreter start-up and the store excluded).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import secrets
import time
from collections.abc import Sequence

import obstore
from obstore.store import S3Store

from bench.measure import put_all


def _store(bucket: str) -> S3Store:
    return S3Store(
        bucket,
        config={
            "region": os.environ.get("AWS_REGION", "us-east-1"),
            "endpoint": os.environ["AWS_ENDPOINT_URL"],
            "access_key_id": os.environ["AWS_ACCESS_KEY_ID"],
            "secret_access_key": os.environ["AWS_SECRET_ACCESS_KEY"],
            "checksum_algorithm": "crc64nvme",
            "unsigned_payload": True,
            "virtual_hosted_style_request": False,
        },
        client_options={"allow_http": True, "pool_max_idle_per_host": "64"},
        retry_config={"max_retries": 0},
    )


def _sync(store: S3Store, keys: list[str], data: bytes, concurrency: int) -> None:
    put_all(
        lambda key: obstore.put(store, key, data, use_multipart=False, mode="overwrite"),
        keys,
        concurrency,
    )


def _async(store: S3Store, keys: list[str], data: bytes, concurrency: int) -> None:
    async def main() -> None:
        slots = asyncio.Semaphore(concurrency)

        async def one(key: str) -> None:
            async with slots:
                await obstore.put_async(store, key, data, use_multipart=False, mode="overwrite")

        await asyncio.gather(*(one(k) for k in keys))

    asyncio.run(main())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.obstore_alone", description=__doc__)
    parser.add_argument("--mode", choices=("sync", "async"), default="sync")
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--bucket", default="bench")
    args = parser.parse_args(argv)
    store = _store(args.bucket)
    prefix = secrets.token_hex(4)
    keys = [f"{prefix}/f{i:06d}" for i in range(args.files)]
    data = os.urandom(args.size)
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    (_sync if args.mode == "sync" else _async)(store, keys, data, args.concurrency)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    user = after.ru_utime - before.ru_utime
    system = after.ru_stime - before.ru_stime
    cpu = user + system
    print(
        f"{args.mode} concurrency={args.concurrency}: wall {wall:.2f} s, "
        f"{args.files / wall:.0f} files/s, CPU {cpu:.2f} s = {cpu / args.files * 1000:.3f} ms/file "
        f"(user {user:.2f}, sys {system:.2f}), context switches "
        f"{after.ru_nvcsw - before.ru_nvcsw} voluntary, {after.ru_nivcsw - before.ru_nivcsw} forced"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
