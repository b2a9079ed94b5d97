"""The server's CPU per PUT by request shape: which headers make SeaweedFS work harder.

    python -m bench.shape --size 262144 --files 500 --rounds 6 --tmpdir /work/bench-out

One SeaweedFS server; each round PUTs ``--files`` objects of ``--size`` bytes in every shape,
in a rotated order (round r starts at shape r), ``--concurrency`` threads, one fresh bucket per
(shape, round). The server's user + sys CPU over each batch (``/proc/PID/stat``) divided by the
number of PUTs is the figure; medians and min-max over the rounds are printed, with the
client's own CPU per PUT (``getrusage`` of this process, so only comparable between the obstore
shapes). Shapes:

* ``crc64nvme``: what spool_tool's obstore engine sends (UNSIGNED-PAYLOAD, x-amz-checksum-crc64nvme)
* ``sha256``: the same with x-amz-checksum-sha256
* ``unsigned``: UNSIGNED-PAYLOAD, no checksum (S3 verifies nothing; for comparison only)
* ``signed``: the body's SHA-256 in SigV4 (x-amz-content-sha256), no checksum header
* ``boto-md5``: boto3 with a signed payload, Content-MD5 and Content-Type, as s5cmd sends
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.measure import process_cpu_seconds, put_all
from devtools.seaweed import SeaweedServer

SHAPES = ("crc64nvme", "sha256", "unsigned", "signed", "boto-md5")

Put = Callable[[str], None]


def _obstore_put(sw: SeaweedServer, bucket: str, shape: str, data: bytes, threads: int) -> Put:
    import obstore  # noqa: PLC0415 - only this experiment needs it at module level
    from obstore.store import S3Store  # noqa: PLC0415

    config: dict[str, Any] = {
        "endpoint": sw.endpoint_url,
        "region": sw.region,
        "access_key_id": sw.access_key,
        "secret_access_key": sw.secret_key,
        "virtual_hosted_style_request": False,
        "unsigned_payload": shape != "signed",
    }
    if shape in ("crc64nvme", "sha256"):
        config["checksum_algorithm"] = shape
    store = S3Store(
        bucket,
        config=config,  # type: ignore[arg-type]  # built key by key from the shape
        client_options={"allow_http": True, "pool_max_idle_per_host": str(threads)},
        retry_config={"max_retries": 0},
    )

    def put(key: str) -> None:
        obstore.put(store, key, data, use_multipart=False, mode="overwrite")

    return put


def _boto_put(sw: SeaweedServer, bucket: str, data: bytes, threads: int) -> Put:
    import boto3  # noqa: PLC0415
    from botocore.config import Config  # noqa: PLC0415

    client = boto3.client(
        "s3",
        endpoint_url=sw.endpoint_url,
        region_name=sw.region,
        aws_access_key_id=sw.access_key,
        aws_secret_access_key=sw.secret_key,
        config=Config(
            max_pool_connections=threads,
            s3={"addressing_style": "path", "payload_signing_enabled": True},
            request_checksum_calculation="when_required",
            retries={"max_attempts": 1},
        ),
    )
    md5 = base64.b64encode(hashlib.md5(data).digest()).decode()

    def put(key: str) -> None:
        client.put_object(
            Bucket=bucket, Key=key, Body=data, ContentMD5=md5, ContentType="binary/octet-stream"
        )

    return put


def _make_bucket(sw: SeaweedServer, bucket: str) -> None:
    import boto3  # noqa: PLC0415

    boto3.client(
        "s3",
        endpoint_url=sw.endpoint_url,
        region_name=sw.region,
        aws_access_key_id=sw.access_key,
        aws_secret_access_key=sw.secret_key,
    ).create_bucket(Bucket=bucket)


def _client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(args: argparse.Namespace, workdir: Path) -> dict[str, list[tuple[float, float, float]]]:
    sw = SeaweedServer(workdir / "seaweed")
    sw.start()
    data = os.urandom(args.size)
    results: dict[str, list[tuple[float, float, float]]] = {s: [] for s in args.shapes}
    try:
        for r in range(args.rounds):
            order = args.shapes[r % len(args.shapes) :] + args.shapes[: r % len(args.shapes)]
            for shape in order:
                bucket = f"shape-{shape}-{r}".replace("_", "-")
                _make_bucket(sw, bucket)
                put = (
                    _boto_put(sw, bucket, data, args.concurrency)
                    if shape == "boto-md5"
                    else _obstore_put(sw, bucket, shape, data, args.concurrency)
                )
                keys = [f"r{r}/f{i:06d}.dat" for i in range(args.files)]
                time.sleep(args.settle)
                server0, client0 = process_cpu_seconds(sw.pid), _client_cpu()
                wall0 = time.monotonic()
                put_all(put, keys, args.concurrency)
                wall = time.monotonic() - wall0
                server1, client1 = process_cpu_seconds(sw.pid), _client_cpu()
                assert server0 is not None
                assert server1 is not None
                per = 1000.0 / args.files
                results[shape].append(((server1 - server0) * per, (client1 - client0) * per, wall))
                print(
                    f"[shape] round {r} {shape:<10} server {(server1 - server0) * per:.3f} ms/PUT"
                    f"  client {(client1 - client0) * per:.3f} ms/PUT  wall {wall:.2f} s",
                    flush=True,
                )
    finally:
        sw.stop()
    return results


def summary(results: dict[str, list[tuple[float, float, float]]], args: argparse.Namespace) -> str:
    lines = [
        (
            f"{args.files} PUTs x {args.size:,} B, {args.concurrency} threads,"
            f" {args.rounds} rotated rounds"
        ),
        "",
        "| shape | server CPU ms/PUT | client CPU ms/PUT | wall s |",
        "|---|---|---|---|",
    ]
    for shape, rows in results.items():
        cells = []
        for column in range(3):
            values = [row[column] for row in rows]
            cells.append(f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})")
        lines.append(f"| {shape} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.shape", description=__doc__)
    parser.add_argument("--size", type=int, default=262_144)
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--settle", type=float, default=1.0, help="seconds of idle before a batch")
    parser.add_argument("--shapes", type=lambda s: tuple(s.split(",")), default=SHAPES)
    parser.add_argument("--tmpdir", default=None)
    args = parser.parse_args(argv)
    unknown = set(args.shapes) - set(SHAPES)
    if unknown:
        parser.error(f"unknown shapes {sorted(unknown)}; known: {', '.join(SHAPES)}")
    with tempfile.TemporaryDirectory(prefix="spool-shape-", dir=args.tmpdir) as tmp:
        results = run(args, Path(tmp))
    print(summary(results, args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
