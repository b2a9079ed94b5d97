"""A tiny logging HTTP proxy: what request shape does each tool send to S3?

    python -m bench.capture --listen 18080 --upstream 127.0.0.1:8333 --out heads.jsonl

Point a tool's endpoint at ``http://127.0.0.1:18080``; every request head the tool sends (method,
target, headers; the ``Authorization`` signature cut short) is appended to ``--out`` as one JSON
line, with the body size actually sent. Bodies are forwarded untouched (Content-Length or
chunked framing is followed so keep-alive connections stay in step); responses are passed back
as they come. For request-shape comparisons only (signed payload or ``UNSIGNED-PAYLOAD``,
``aws-chunked`` with a trailer, which checksum header, part size): the proxy's own CPU makes its
timings meaningless. Stdlib only; loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

_MAX_HEAD = 65536


def _headers(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    pairs = []
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            pairs.append((name.strip(), value.strip()))
    return lines[0], pairs


def _redact(name: str, value: str) -> str:
    if name.lower() == "authorization" and "Signature=" in value:
        return value.split("Signature=", 1)[0] + "Signature=..."
    return value


async def _copy_body(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, headers: dict[str, str]
) -> int:
    """Forward one request body; returns its size on the wire."""
    sent = 0
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size_line = await reader.readline()
            writer.write(size_line)
            sent += len(size_line)
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:  # trailers until an empty line
                while True:
                    line = await reader.readline()
                    writer.write(line)
                    sent += len(line)
                    if line in {b"\r\n", b"\n", b""}:
                        return sent
            data = await reader.readexactly(size + 2)
            writer.write(data)
            sent += len(data)
            await writer.drain()
    remaining = int(headers.get("content-length", "0") or "0")
    while remaining:
        data = await reader.read(min(remaining, 1 << 20))
        if not data:
            break
        writer.write(data)
        sent += len(data)
        remaining -= len(data)
        await writer.drain()
    return sent


async def _requests(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, out: IO[str], conn: int
) -> None:
    while True:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            break
        start, pairs = _headers(head)
        lower = {k.lower(): v for k, v in pairs}
        writer.write(head)
        body = await _copy_body(reader, writer, lower)
        await writer.drain()
        record = {
            "t": time.time(),
            "conn": conn,
            "request": start,
            "headers": {k: _redact(k, v) for k, v in pairs},
            "body_bytes": body,
        }
        out.write(json.dumps(record) + "\n")
        out.flush()
    with contextlib.suppress(OSError):
        writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError):
        writer.close()


async def serve(listen: int, upstream: tuple[str, int], out: IO[str]) -> None:
    counter = 0

    async def handle(c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        nonlocal counter
        counter += 1
        s_reader, s_writer = await asyncio.open_connection(*upstream, limit=_MAX_HEAD)
        await asyncio.gather(_requests(c_reader, s_writer, out, counter), _pipe(s_reader, c_writer))

    server = await asyncio.start_server(handle, "127.0.0.1", listen, limit=_MAX_HEAD)
    async with server:
        await server.serve_forever()


_EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def _shape(value: str) -> str:
    """A header value as a shape: a body's own SHA-256 is "<sha256 of body>"."""
    if value == _EMPTY_SHA256:
        return "<sha256 of empty body>"
    if len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return "<sha256 of body>"
    return value[:40]


def summarise(path: Path) -> str:
    """Request shapes in a capture: count per (method, interesting headers) combination."""
    shapes: dict[str, list[int]] = {}
    keep = (
        "x-amz-content-sha256", "content-encoding", "transfer-encoding", "x-amz-trailer",
        "x-amz-sdk-checksum-algorithm", "content-md5", "expect",
    )  # fmt: skip
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        method, target = rec["request"].split()[:2]
        headers = {k.lower(): v for k, v in rec["headers"].items()}
        kind = "part" if "partNumber=" in target else ("create" if "uploads" in target else "")
        shown = [f"{k}={_shape(headers[k])}" for k in keep if k in headers]
        shown += sorted(k for k in headers if k.startswith("x-amz-checksum-"))
        key = f"{method} {kind} " + ", ".join(shown)
        shapes.setdefault(key, []).append(rec["body_bytes"])
    out = []
    for key, sizes in sorted(shapes.items(), key=lambda kv: -len(kv[1])):
        out.append(f"{len(sizes):6d} x {key}  (body {min(sizes):,}-{max(sizes):,} B)")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.capture", description=__doc__)
    parser.add_argument("--listen", type=int, help="port on 127.0.0.1 to listen on")
    parser.add_argument("--upstream", help="HOST:PORT of the S3 server")
    parser.add_argument("--out", type=Path, required=True, help="JSON lines file")
    parser.add_argument("--summary", action="store_true", help="summarise --out and exit")
    args = parser.parse_args(argv)
    if args.summary:
        print(summarise(args.out))
        return 0
    if args.listen is None or args.upstream is None:
        parser.error("--listen and --upstream are required unless --summary")
    host, port = args.upstream.rsplit(":", 1)
    with args.out.open("a") as out, contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.listen, (host, int(port)), out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
