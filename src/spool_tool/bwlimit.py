"""``--bwlimit RATE``: one token bucket, in bytes per second, shared by every upload.

Every request body (a single PUT or one multipart part) is charged whole, *once, before it
is sent* (``consume(len)``, in ``destinations/gated.py``). Reservations are served in order, so
bodies leave one after another at the rate and a 10-second window is off by at most one body:
within 10% while a body is at most one second of the rate (``tests/test_bwlimit.py`` simulates
it). Charging bodies chunk by chunk as 64 workers read them would instead release 64 bodies at
nearly the same moment: 16 MiB bodies at 20 MiB/s put 4x the rate into one window.

A retry that sends a body again is charged again.

The bucket follows rclone's ``--bwlimit`` (``fs/accounting/token_bucket.go``): it starts
*empty* (no burst at start). A request larger than the bucket still goes through, paying its
debt (as reservations in ``golang.org/x/time/rate``; rclone instead caps the chunk at the
bucket size). The bucket holds ``BURST_SECONDS`` of the rate (at least ``MIN_BURST``): over a
window of T seconds at most ``rate * T + burst`` bytes are granted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from spool_tool.sizes import to_bytes

BURST_SECONDS = 0.2
MIN_BURST = 64 * 1024
MIN_RATE = 1024  # below 1 KiB/s a single part would take hours: surely a typo


class BandwidthCancelledError(Exception):
    """``consume`` was interrupted by ``cancel()``."""


def parse_rate(text: str) -> int:
    """``20M``, ``512K``, ``1.5G`` -> bytes per second; ``ValueError(reason)`` (the option
    schema names --bwlimit and the value)."""
    rate = to_bytes(text)
    if rate < MIN_RATE:
        raise ValueError("at least 1K (bytes per second)")
    return rate


class BandwidthLimiter:
    """Thread-safe token bucket (see the module docstring); the clock is injected."""

    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(rate * BURST_SECONDS, MIN_BURST))
        self._clock = clock
        self._tokens = 0.0  # empty at start: no burst before the first second
        self._stamp = clock()
        self._cond = threading.Condition()
        self._cancelled = False
        self.consumed = 0  # bytes charged so far

    def reserve(self, n: int) -> float:
        """Charge ``n`` bytes now; return the seconds the caller must wait before sending them
        (0 when the bucket held enough). Never blocks."""
        with self._cond:
            if self._cancelled:
                raise BandwidthCancelledError
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= n
            self.consumed += n
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def consume(self, n: int, timeout: float | None = None) -> bool:
        """Charge ``n`` bytes and sleep until they may be sent; False if that would take longer
        than ``timeout`` (nothing is charged then). ``cancel()`` interrupts the sleep."""
        wait = self.reserve(n)
        if timeout is not None and wait > timeout:
            self._refund(n)
            return False
        if wait > 0:
            deadline = time.monotonic() + wait
            with self._cond:
                while not self._cancelled and (left := deadline - time.monotonic()) > 0:
                    self._cond.wait(left)
                if self._cancelled:
                    raise BandwidthCancelledError
        return True

    def _refund(self, n: int) -> None:
        with self._cond:
            self._tokens += n
            self.consumed -= n

    def cancel(self) -> None:
        """Wake every paced reader (they raise ``BandwidthCancelledError``): SIGTERM."""
        with self._cond:
            self._cancelled = True
            self._cond.notify_all()
