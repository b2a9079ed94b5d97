"""Adaptive concurrency: fewer S3 requests in flight while S3 throttles, more again after.

S3 answers ``503 SlowDown`` while a prefix is re-partitioned; AWS advises backing off and
ramping up gradually. ``ConcurrencyGate`` is an AIMD window over the requests in flight:

* every request takes a slot (``acquire``) and gives it back (``release``);
* a throttling answer (``on_throttled``) multiplies the limit by ``decrease`` (0.7, the
  ``_BETA`` of botocore's adaptive mode, ``botocore/retries/throttling.py``), unless the
  request it answers started before the last decrease: the requests already in flight when
  the first 503 arrived answer 503 too, and one congestion event must count once (TCP's one
  decrease per window). The start of each thread's latest request is kept thread-locally,
  which is right because a request's answer is reported by the thread that sent it. A fixed
  cooldown instead (one decrease per second) was measured in ``bench/gate_probe.py``: with
  fast answers the additive increase outran it and the limit settled near 10 whatever the
  server could take;
* the limit starts at ``initial`` (4) and, until the first throttling answer, each success adds
  a slot: the limit doubles per window of requests (TCP's slow start), reaching 64 in four
  round trips, so a cron run does not open with 64 requests into a prefix that is being
  throttled (AWS: ramp up gradually). After a decrease the limit grows that fast only up to
  half the limit at the decrease (TCP's ``ssthresh``); above it each success adds
  ``1 / limit``, about one slot per window (additive increase, as TCP congestion avoidance;
  botocore grows a *rate* along a CUBIC curve instead, which needs a measured send rate);
* the limit never leaves ``1 .. maximum``. At 1 and still throttled, request starts are spaced
  by a pause, as rclone's S3 pacer sleeps between calls only once errors come
  (``lib/pacer/pacers.go``). The pause is AIMD too, on the request *rate* (1 / pause): the
  first throttle sets the rate to ``decrease`` times the measured one (botocore's adaptive
  mode: ``rate_to_use = measured_rate``, times beta; we measure the gap between request
  starts, smoothed as its ``RateClocker`` does with 0.8), each further one divides it by
  1 / ``decrease``, a success adds ``rate_step`` requests/s, and
  below ``min_pause`` (1 ms: 1,000 requests/s, far above any prefix's share) the pause is
  gone and the limit may grow again. rclone doubles its sleep per error and takes a quarter
  off per success; that is multiplicative both ways, which does not converge to fair shares
  (Chiu & Jain, 1989), and ``bench/gate_probe.py`` showed it: one of four agents sat at a
  0.7 s pause for ten seconds while the others ran free. A 10 ms floor was a cliff there too:
  at a prefix limit of 100/s the pause vanished exactly at the limit, the limit jumped back to
  5, and 25% of requests were throttled.

Transitions are reported through ``on_change``: ``ThrottlingStarted`` at the first throttling
answer, ``ThrottlingEnded`` at the first success ``quiet`` seconds after the last one (or at
``finish()``), so the core can say one line each. The clock is injected; waiting for a slot is
bounded (``timeout``) and ``cancel()`` wakes every waiter at once (SIGTERM).
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

# botocore's throttling codes (``standard.py``: ``_THROTTLED_ERROR_CODES``), plus HTTP 429.
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)
TOO_MANY_REQUESTS = 429


def is_throttling(code: str | None, status: int | None) -> bool:
    """A throttling answer: one of botocore's throttling codes, or HTTP 429.

    A bare 503 without a code is *not* throttling (S3 says ``SlowDown`` when it means it);
    it stays an ordinary transient error."""
    return code in THROTTLING_CODES or status == TOO_MANY_REQUESTS


@dataclass(frozen=True)
class ThrottlingStarted:
    limit: int  # the concurrency limit after the first decrease


@dataclass(frozen=True)
class ThrottlingEnded:
    seconds: float  # from the first to the last throttling answer
    throttled: int  # throttling answers in that episode
    limit: int  # the concurrency limit now


ThrottleChange = ThrottlingStarted | ThrottlingEnded


class GateCancelledError(Exception):
    """``acquire`` was interrupted by ``cancel()``: stop starting requests."""


class ConcurrencyGate:
    """Thread-safe AIMD limit on requests in flight (see the module docstring)."""

    def __init__(
        self,
        maximum: int,
        *,
        initial: int = 4,
        decrease: float = 0.7,
        quiet: float = 30.0,
        max_pause: float = 2.0,
        min_pause: float = 0.001,
        rate_step: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[ThrottleChange], None] | None = None,
    ) -> None:
        if maximum < 1:
            raise ValueError(f"maximum must be >= 1, got {maximum}")
        if not 0 < decrease < 1:
            raise ValueError(f"decrease must be in (0, 1), got {decrease}")
        self.maximum = maximum
        self._limit = float(min(max(initial, 1), maximum))
        self._threshold = float(maximum)  # below it: slow start
        self._decrease = decrease
        self._local = threading.local()  # .started: this thread's latest request start
        self._quiet = quiet
        self._max_pause = max_pause
        self._min_pause = min_pause
        self._rate_step = rate_step
        self._clock = clock
        self.on_change = on_change
        self._cond = threading.Condition()
        self._in_flight = 0
        self._pause = 0.0
        self._next_start = -math.inf
        self._last_start = -math.inf
        self._gap: float | None = None  # smoothed seconds between request starts
        self._last_decrease = -math.inf
        self._episode_start: float | None = None  # first throttle of the current episode
        self._last_throttle = -math.inf
        self._episode_throttled = 0
        self._cancelled = False
        self.throttled_total = 0  # every throttling answer seen (the metrics counter)

    # -- state ------------------------------------------------------------------------------

    @property
    def limit(self) -> int:
        """Requests allowed in flight now (the ``spool_tool_concurrency`` gauge)."""
        with self._cond:
            return int(self._limit)

    @property
    def in_flight(self) -> int:
        with self._cond:
            return self._in_flight

    @property
    def pause(self) -> float:
        """Seconds between request starts (0 unless throttled at a limit of 1)."""
        with self._cond:
            return self._pause

    @property
    def throttling(self) -> bool:
        with self._cond:
            return self._episode_start is not None

    # -- slots ------------------------------------------------------------------------------

    def try_acquire(self) -> float:
        """Take a slot if one is free now: 0.0 on success, else the seconds to wait before
        trying again (``math.inf``: wait for a ``release``)."""
        with self._cond:
            return self._try_acquire_locked()

    def _try_acquire_locked(self) -> float:
        if self._cancelled:
            raise GateCancelledError
        if self._in_flight >= int(self._limit):
            return math.inf
        now = self._clock()
        if now < self._next_start:
            return self._next_start - now
        self._in_flight += 1
        self._next_start = now + self._pause
        self._local.started = now
        if self._last_start > -math.inf:
            gap = now - self._last_start
            self._gap = gap if self._gap is None else 0.8 * gap + 0.2 * self._gap
        self._last_start = now
        return 0.0

    def acquire(self, timeout: float | None = None) -> bool:
        """Block until a slot is free; False when ``timeout`` seconds passed first.

        Raises ``GateCancelledError`` once ``cancel()`` was called (waiters wake at once)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                wait = self._try_acquire_locked()
                if wait == 0.0:
                    return True
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    wait = min(wait, left)
                self._cond.wait(None if wait == math.inf else wait)

    def release(self) -> None:
        with self._cond:
            if self._in_flight <= 0:
                raise RuntimeError("release() without acquire()")
            self._in_flight -= 1
            self._cond.notify()

    def cancel(self) -> None:
        """Refuse every further ``acquire`` and wake the threads waiting in it."""
        with self._cond:
            self._cancelled = True
            self._cond.notify_all()

    # -- feedback ---------------------------------------------------------------------------

    def on_throttled(self) -> None:
        """A request got a throttling answer (call it per answer, retries included, from the
        thread that sent the request)."""
        now = self._clock()
        sent_at: float = getattr(self._local, "started", math.inf)  # unknown: a new request
        started = None
        with self._cond:
            self.throttled_total += 1
            self._episode_throttled += 1
            self._last_throttle = now
            if self._episode_start is None:
                self._episode_start = now
            if int(self._limit) <= 1:
                # One request in flight: every answer is news, no burst to discount.
                measured = self._pause or self._gap or 0.0
                slower = measured / self._decrease
                self._pause = min(self._max_pause, max(self._min_pause, slower))
            elif sent_at > self._last_decrease:
                self._last_decrease = now
                self._threshold = max(1.0, self._limit / 2)
                self._limit = max(1.0, self._limit * self._decrease)
            if self._episode_throttled == 1:
                started = ThrottlingStarted(int(self._limit))
        if started is not None:
            self._report(started)

    def on_success(self) -> None:
        """A request succeeded: grow back (pause first, then the limit)."""
        now = self._clock()
        ended = None
        with self._cond:
            if self._pause > 0:
                self._pause = 1 / (1 / self._pause + self._rate_step)
                if self._pause < self._min_pause:
                    self._pause = 0.0
            elif self._limit < self.maximum:
                step = 1.0 if self._limit < self._threshold else 1 / self._limit
                grown = self._limit + step
                if int(grown) > int(self._limit):
                    self._cond.notify()  # one more slot
                self._limit = min(float(self.maximum), grown)
            if self._episode_start is not None and now - self._last_throttle >= self._quiet:
                ended = self._end_episode_locked()
        if ended is not None:
            self._report(ended)

    def finish(self) -> None:
        """End of a run or cycle: report the end of an episode still open."""
        with self._cond:
            ended = self._end_episode_locked() if self._episode_start is not None else None
        if ended is not None:
            self._report(ended)

    def _end_episode_locked(self) -> ThrottlingEnded:
        assert self._episode_start is not None
        ended = ThrottlingEnded(
            self._last_throttle - self._episode_start, self._episode_throttled, int(self._limit)
        )
        self._episode_start = None
        self._episode_throttled = 0
        return ended

    def _report(self, change: ThrottleChange) -> None:
        if self.on_change is not None:
            self.on_change(change)


class FixedGate(ConcurrencyGate):
    """``--concurrency-mode fixed``: every request may start at once (up to ``maximum``);
    throttling answers are counted, the limit stays."""

    def __init__(self, maximum: int, **kwargs: Any) -> None:
        super().__init__(maximum, initial=maximum, **kwargs)

    def on_throttled(self) -> None:
        with self._cond:
            self.throttled_total += 1

    def on_success(self) -> None:
        pass


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts per request and botocore's standard backoff (``retries/standard.py``:
    ``rand(0, 1) * min(scale * 2**i, 20)``, scale 1 s after a throttle, 0.05 s otherwise)."""

    max_attempts: int = 5
    throttled_scale: float = 1.0
    transient_scale: float = 0.05
    max_backoff: float = 20.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")

    def delay(self, retry: int, throttled: bool, rng: Callable[[], float]) -> float:
        scale = self.throttled_scale if throttled else self.transient_scale
        return rng() * min(scale * 2.0**retry, self.max_backoff)


def send_with_retries(
    gate: ConcurrencyGate,
    send: Callable[[], T],
    *,
    is_throttled: Callable[[BaseException], bool],
    is_retryable: Callable[[BaseException], bool],
    policy: RetryPolicy,
    stop: threading.Event,
    rng: Callable[[], float] = random.random,
    on_retry: Callable[[BaseException], None] | None = None,
) -> T:
    """Call ``send`` (one attempt, no retries of its own) until it succeeds, through ``gate``.

    A throttling answer lowers the gate; it and other retryable failures are retried after a
    backoff (interrupted by ``stop``: then the last error is raised) up to
    ``policy.max_attempts``; anything else is raised at once. ``GateCancelledError`` when the
    gate was cancelled before an attempt could start. ``on_retry`` hears each failure that
    is about to be retried (the retry warning)."""
    for attempt in range(policy.max_attempts):
        gate.acquire()
        try:
            result = send()
        except Exception as exc:
            gate.release()
            throttled = is_throttled(exc)
            if throttled:
                gate.on_throttled()
            last = attempt + 1 == policy.max_attempts
            if last or not (throttled or is_retryable(exc)):
                raise
            if on_retry is not None:
                on_retry(exc)
            if stop.wait(policy.delay(attempt, throttled, rng)):
                raise
            continue
        gate.release()
        gate.on_success()
        return result
    raise AssertionError("unreachable: max_attempts >= 1")
