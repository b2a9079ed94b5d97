"""One retry loop for every S3 request of a destination, both engines, through its gate.

Both libraries' own retries are off (botocore ``total_max_attempts=1``, obstore
``max_retries=0``): their retries were invisible and, under ``503 SlowDown``, multiplied the
requests (4.2 per file for four agents in one partition, ``notes/fleet.md``). Here every
attempt takes a slot of the destination's ``ConcurrencyGate`` (``throttle.py``), so a throttling
answer lowers the limit before the retry starts, and the retry waits for the lowered limit.

What an attempt's exception means is decided by ``s3errors`` on the engine's ``S3Failure``
(``failure_of``): throttling (``throttle.is_throttling``), worth another attempt
(``s3errors.worth_retrying``), or final. ``bwlimit``: an attempt after the first sends its body
again, so the caller's ``send`` charges it again (``charge``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from spool_tool.bwlimit import BandwidthCancelledError, BandwidthLimiter
from spool_tool.destinations.s3errors import RetryNotice, S3Failure, throttled, worth_retrying
from spool_tool.errors import RetryableError
from spool_tool.throttle import (
    ConcurrencyGate,
    FixedGate,
    GateCancelledError,
    RetryPolicy,
    send_with_retries,
)

T = TypeVar("T")
# The longest pause between request starts at a limit of 1 (10 requests/s per destination):
# a run facing a store that throttles everything still reaches pipeline.TRANSIENT_FAILURE_LIMIT
# and stops (or a daemon backs off) in seconds, not minutes (RELIABILITY row 2). Against S3's
# 3,500 PUT/s per prefix the floor matters only beyond ~350 hosts in one prefix; in the scaled
# fleet simulation (100/s) it is above 16 hosts' fair share (BENCHMARKS.md).
MAX_PAUSE = 0.1
FailureOf = Callable[[BaseException], "S3Failure | None"]


class GatedRequests:
    """A destination's gate, retry policy, bandwidth limiter and stop event, in one place."""

    def __init__(
        self,
        maximum: int,
        *,
        max_attempts: int,
        notice: RetryNotice,
        adaptive: bool = True,
        limiter: BandwidthLimiter | None = None,
    ) -> None:
        self.gate = (
            ConcurrencyGate(maximum, max_pause=MAX_PAUSE) if adaptive else FixedGate(maximum)
        )
        self.policy = RetryPolicy(max_attempts=max_attempts)
        self.notice = notice
        self.limiter = limiter
        self.stop = threading.Event()  # set by cancel(): backoffs and waits end at once
        self._reported = 0  # gate.throttled_total at the last report()

    def call(self, send: Callable[[], T], failure_of: FailureOf, *, body: int = 0) -> T:
        """``send`` (one attempt of one request) until it succeeds or the attempts are spent;
        the last exception is raised as it is, for the caller to translate. ``body``: bytes
        the request sends, charged to the bandwidth limit on every attempt."""

        def is_throttled(exc: BaseException) -> bool:
            failure = failure_of(exc)
            return failure is not None and throttled(failure)

        def is_retryable(exc: BaseException) -> bool:
            failure = failure_of(exc)
            return failure is not None and worth_retrying(failure)

        def on_retry(exc: BaseException) -> None:
            failure = failure_of(exc)
            if failure is not None:
                self.notice.retrying(failure)

        def attempt() -> T:
            if body and self.limiter is not None:
                self.limiter.consume(body)
            return send()

        try:
            return send_with_retries(
                self.gate,
                attempt,
                is_throttled=is_throttled,
                is_retryable=is_retryable,
                policy=self.policy,
                stop=self.stop,
                on_retry=on_retry,
            )
        except (GateCancelledError, BandwidthCancelledError) as exc:
            raise RetryableError("interrupted before the request was sent") from exc

    def cancel(self) -> None:
        """A signal: no new attempt starts, backoffs and paced waits end now."""
        self.stop.set()
        self.gate.cancel()
        if self.limiter is not None:
            self.limiter.cancel()

    def report(self) -> tuple[int, int]:
        """(throttling answers since the last report, the limit now): for the cycle's summary."""
        total = self.gate.throttled_total
        delta, self._reported = total - self._reported, total
        return delta, self.gate.limit
