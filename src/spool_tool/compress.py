"""Optional compression of uploads (``--compress gzip|zstd``).

The compressed body is streamed into an anonymous temporary file (``O_TMPFILE`` where the
platform has it, so a crash leaves nothing behind) in the spool's state directory, then uploaded
from there like any file. A file whose name already says it is compressed is sent as is.
"""

from __future__ import annotations

import os
import tempfile
import zlib
from typing import TYPE_CHECKING

from spool_tool.spoolfs import Source

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from spool_tool.config import Compression  # the one declaration of the choices
SUFFIX: dict[str, str] = {"gzip": ".gz", "zstd": ".zst"}
ENCODING: dict[str, str] = {"gzip": "gzip", "zstd": "zstd"}
ALREADY_COMPRESSED = (
    ".gz", ".tgz", ".zst", ".zstd", ".bz2", ".xz", ".lz4", ".lzma", ".zip", ".7z", ".br",
    ".snappy", ".parquet", ".orc", ".avro", ".jpg", ".jpeg", ".png", ".mp4",
)  # fmt: skip
CHUNK = 1 << 20


def wants_compression(name: str, compression: Compression | None) -> bool:
    return compression is not None and not name.lower().endswith(ALREADY_COMPRESSED)


def compress_to_temp(source: Source, compression: Compression, tmp_dir: Path) -> Source:
    """Compress ``source`` (read through its fd) into an anonymous temp file; return it open."""
    tmp_dir.mkdir(exist_ok=True)
    out = tempfile.TemporaryFile(dir=tmp_dir)  # noqa: SIM115 - ownership passes to the Source
    try:
        if compression == "gzip":
            packer = zlib.compressobj(6, zlib.DEFLATED, 31)  # gzip framing, no name/mtime
            for chunk in _chunks(source):
                out.write(packer.compress(chunk))
            out.write(packer.flush())
        else:
            import zstandard  # noqa: PLC0415 - optional dependency, loaded on demand

            compressor = zstandard.ZstdCompressor(level=3, write_checksum=True)
            # The frame records the content size, which decoders use to preallocate.
            with compressor.stream_writer(out, size=source.size, closefd=False) as writer:
                for chunk in _chunks(source):
                    writer.write(chunk)
        out.flush()
        fd = os.dup(out.fileno())
    finally:
        out.close()
    return Source(source.path, fd, os.fstat(fd))


def _chunks(source: Source) -> Iterator[bytes]:
    offset = 0
    while True:
        chunk = os.pread(source.fd, CHUNK, offset)
        if not chunk:
            return
        offset += len(chunk)
        yield chunk
