"""A byte budget: bounds the bytes of file data held in memory by uploads at once.

Single PUTs read the whole file (up to ``--multipart-threshold``) and multipart parts read a
whole part; with 64 workers that could be gigabytes. Every such buffer takes its size from one
budget first and gives it back when the request is done. An item larger than the whole budget
still goes through, alone, so nothing can wait forever.
"""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

DEFAULT_BUDGET = 256 * 1024 * 1024


class ByteBudget:
    def __init__(self, limit: int = DEFAULT_BUDGET) -> None:
        self.limit = limit
        self.used = 0
        self.peak = 0
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def hold(self, size: int) -> Iterator[None]:
        """Block until ``size`` bytes fit (or nothing else is held), keep them while inside."""
        with self._cond:
            while self.used and self.used + size > self.limit:
                self._cond.wait()
            self.used += size
            self.peak = max(self.peak, self.used)
        try:
            yield
        finally:
            with self._cond:
                self.used -= size
                self._cond.notify_all()
