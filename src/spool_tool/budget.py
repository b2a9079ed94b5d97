"""A byte budget: bounds the bytes of file data held in memory by uploads at once.

Single PUTs read the whole file (up to ``--multipart-threshold``) and multipart parts read a
whole part; with 64 workers that could be gigabytes. Every such buffer takes its size from one
budget first and gives it back when the request is done. An item larger than the whole budget
still goes through, alone, so nothing can wait forever.

The budget counts bytes held; resident memory follows it only if freed buffers go back to the
operating system. glibc's malloc does not ensure that by default: after the first large buffer
is freed it raises its mmap threshold to that buffer's size, so later buffers of up to that
size come from the per-thread arenas and stay resident once freed. With ``--part-size 32MiB``
(48 MiB files: 32 + 16 MiB parts) that took a run to 410 MiB RSS against 52 MiB baseline +
256 MiB budget (BENCHMARKS.md, "Memory cap"). ``ByteBudget`` therefore fixes glibc's mmap
threshold at 1 MiB (``mallopt(M_MMAP_THRESHOLD)``, which also turns the dynamic adjustment
off): every file buffer is its own mapping and is unmapped when freed. Elsewhere (musl, macOS)
nothing is changed. No copies are made below us: botocore hashes (SigV4, CRC32, MD5) and sends
a ``bytes`` body of 1 MiB or more in place (``Expect: 100-continue`` sends headers and body
separately), measured per part.

Multipart parts are read into reused buffers (``PartBuffers``): a fresh part-sized ``bytes``
per part is a fresh mapping whose pages fault in one by one while ``pread`` fills it and are
unmapped after the part, which cost the client ~1 s of system CPU per GB (BENCHMARKS.md).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import threading
from typing import TYPE_CHECKING

from spool_tool.libc import libc

if TYPE_CHECKING:
    from collections.abc import Iterator

DEFAULT_BUDGET = 256 * 1024 * 1024
_M_MMAP_THRESHOLD = -3  # glibc's malloc.h
MMAP_THRESHOLD = 1024 * 1024


@functools.cache
def unmap_large_buffers_when_freed() -> bool:
    """Make glibc serve every allocation of ``MMAP_THRESHOLD`` or more by its own mapping (see
    the module docstring). True where that was done; once per process."""
    lib = libc()
    mallopt = getattr(lib, "mallopt", None) if lib is not None else None
    if mallopt is None:
        return False  # not glibc (or no libc found): nothing to tune
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))


class ByteBudget:
    def __init__(self, limit: int = DEFAULT_BUDGET) -> None:
        unmap_large_buffers_when_freed()
        self.limit = limit
        self.used = 0
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def hold(self, size: int) -> Iterator[None]:
        """Block until ``size`` bytes fit (or nothing else is held), keep them while inside."""
        with self._cond:
            while self.used and self.used + size > self.limit:
                self._cond.wait()
            self.used += size
        try:
            yield
        finally:
            with self._cond:
                self.used -= size
                self._cond.notify_all()


class PartBuffers:
    """Buffers for multipart parts, reused from part to part and file to file.

    A buffer is taken for one part and given back when its request is done. Only buffers of
    the largest size asked for are kept, at most ``keep`` of them (the parts in flight,
    ``--part-concurrency``); a smaller one (a file's short last part) is made fresh each time.
    When the last multipart upload using the pool ends (``using``), the free buffers are
    dropped, so an idle daemon goes back to its baseline memory."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self._free: list[bytearray] = []
        self._size = 0  # the size kept: the largest asked for while an upload is on
        self._users = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def using(self) -> Iterator[None]:
        """Around one multipart upload: keeps the free buffers while any upload is on."""
        with self._lock:
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if not self._users:
                    self._free.clear()
                    self._size = 0

    @contextlib.contextmanager
    def buffer(self, size: int) -> Iterator[bytearray]:
        """A buffer of exactly ``size`` bytes (old contents: the caller overwrites it all)."""
        with self._lock:
            if size > self._size:
                self._free.clear()  # larger parts from now on: the smaller ones would not do
                self._size = size
            buf = self._free.pop() if self._free and size == self._size else None
        if buf is None:
            buf = bytearray(size)
        try:
            yield buf
        finally:
            with self._lock:
                if self._users and len(buf) == self._size and len(self._free) < self.keep:
                    self._free.append(buf)
