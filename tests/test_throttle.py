"""ConcurrencyGate: AIMD under throttling, pause at a limit of 1, reports, bounded waits."""

from __future__ import annotations

import math
import threading
import time

import pytest

from spool_tool.throttle import (
    ConcurrencyGate,
    GateCancelledError,
    RetryPolicy,
    ThrottleChange,
    ThrottlingEnded,
    ThrottlingStarted,
    is_throttling,
    send_with_retries,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_starts_at_the_initial_limit_capped_by_the_maximum() -> None:
    assert ConcurrencyGate(64).limit == 4
    assert ConcurrencyGate(64, initial=64).limit == 64


def test_bounds_slots() -> None:
    gate = ConcurrencyGate(3, clock=Clock())
    assert gate.limit == 3
    assert [gate.try_acquire() for _ in range(4)] == [0.0, 0.0, 0.0, math.inf]
    gate.release()
    assert gate.try_acquire() == 0.0
    assert gate.in_flight == 3


def test_throttle_decreases_multiplicatively_once_per_window() -> None:
    clock = Clock()
    gate = ConcurrencyGate(64, initial=64, clock=clock)
    for _ in range(20):
        assert gate.try_acquire() == 0.0
    for _ in range(20):  # a burst of 503s from the requests that were in flight together
        gate.release()
        gate.on_throttled()
    assert gate.limit == 44  # 64 * 0.7, once
    assert gate.throttled_total == 20
    clock.advance(0.01)
    assert gate.try_acquire() == 0.0  # a request sent after the decrease
    gate.release()
    gate.on_throttled()
    assert gate.limit == 31  # 44.8 * 0.7


def test_throttle_reported_by_another_thread_counts_as_new() -> None:
    clock = Clock()
    gate = ConcurrencyGate(10, initial=10, clock=clock)
    assert gate.try_acquire() == 0.0
    gate.on_throttled()
    other = threading.Thread(target=gate.on_throttled)  # this thread never sent a request
    other.start()
    other.join()
    assert gate.limit == 4  # 10 * 0.7 * 0.7


def test_slow_start_doubles_per_window_until_the_first_throttle() -> None:
    gate = ConcurrencyGate(64, clock=Clock())
    for _ in range(4):
        gate.on_success()
    assert gate.limit == 8  # one window of 4 successes: doubled
    for _ in range(8):
        gate.on_success()
    assert gate.limit == 16
    for _ in range(100):
        gate.on_success()
    assert gate.limit == 64  # never above the maximum


def test_after_a_decrease_growth_is_fast_to_half_then_one_slot_per_window() -> None:
    gate = ConcurrencyGate(64, initial=40, clock=Clock())
    gate.on_throttled()
    assert gate.limit == 28  # 40 * 0.7; the threshold is now 20: above it already
    for _ in range(28):
        gate.on_success()
    assert gate.limit == 28  # 28 successes at a window of 28: just under one slot
    gate.on_success()
    assert gate.limit == 29
    low = ConcurrencyGate(64, initial=10, clock=Clock())
    for _ in range(4):
        low.on_throttled()  # 10 -> 7 -> 4.9 -> 3.43 -> 2.4; threshold 1.7
    assert low.limit == 2
    low.on_success()
    assert low.limit == 2  # 2.4 + 1/2.4


def test_limit_stops_at_one_then_start_pause_doubles_up_to_max() -> None:
    clock = Clock()
    gate = ConcurrencyGate(4, clock=clock, max_pause=2.0, min_pause=0.01)
    for _ in range(5):
        gate.on_throttled()  # no request sent from this thread: each counts as a new one
    assert gate.limit == 1
    assert gate.pause > 0
    for _ in range(20):
        gate.on_throttled()
    assert gate.limit == 1
    assert gate.pause == 2.0


def test_pause_spaces_request_starts() -> None:
    clock = Clock()
    gate = ConcurrencyGate(1, clock=clock, min_pause=0.01)
    for _ in range(3):
        gate.on_throttled()  # pause 0.01 -> 0.01 / 0.7 -> 0.01 / 0.49
    assert gate.pause == pytest.approx(0.01 / 0.49)
    assert gate.try_acquire() == 0.0
    gate.release()
    assert gate.try_acquire() == pytest.approx(0.01 / 0.49)
    clock.advance(0.021)
    assert gate.try_acquire() == 0.0


def test_first_pause_is_the_measured_rate_times_the_decrease() -> None:
    clock = Clock()
    gate = ConcurrencyGate(4, initial=1, clock=clock)
    for _ in range(10):  # one request every 20 ms: 50 requests/s
        assert gate.try_acquire() == 0.0
        gate.release()
        clock.advance(0.02)
    gate.on_throttled()
    assert 1 / gate.pause == pytest.approx(50 * 0.7)


def test_pause_is_aimd_on_the_request_rate() -> None:
    gate = ConcurrencyGate(8, initial=1, clock=Clock(), min_pause=0.01, rate_step=1.0)
    for _ in range(8):
        gate.on_throttled()
    assert gate.pause == pytest.approx(0.01 / 0.7**7)  # ~12 requests/s
    gate.on_success()
    assert 1 / gate.pause == pytest.approx(0.7**7 * 100 + 1.0)  # + 1 request/s
    gate.on_throttled()
    assert 1 / gate.pause == pytest.approx((0.7**7 * 100 + 1.0) * 0.7)


def test_pause_decays_to_zero_before_the_limit_grows() -> None:
    clock = Clock()
    gate = ConcurrencyGate(8, initial=1, clock=clock, min_pause=0.01, rate_step=10.0)
    gate.on_throttled()
    gate.on_throttled()
    assert gate.pause == pytest.approx(0.01 / 0.7)  # 70 requests/s
    successes = 0
    while gate.pause > 0:
        assert gate.limit == 1
        gate.on_success()
        successes += 1
    assert successes == 4  # 70 + 4 * 10 > 100 requests/s: no pause any more
    gate.on_success()
    assert gate.limit == 2


def test_equal_agents_converge_to_equal_pauses() -> None:
    """AIMD is fair where rclone's multiplicative decay is not: two gates that start far apart
    and see the same throttles once their combined rate exceeds a capacity end up equal."""
    gates = [ConcurrencyGate(1, clock=Clock()) for _ in range(2)]
    for _ in range(20):
        gates[0].on_throttled()  # one agent very slow, the other not paced at all
    capacity = 50.0  # requests/s the two share
    for _ in range(4000):
        rates = [1 / g.pause if g.pause else 100.0 for g in gates]
        for gate in gates:
            if sum(rates) > capacity:
                gate.on_throttled()
            else:
                gate.on_success()
    first, second = (1 / g.pause for g in gates)
    assert first == pytest.approx(second, rel=0.05)


def test_started_once_and_ended_after_quiet_period() -> None:
    clock = Clock()
    changes: list[ThrottleChange] = []
    gate = ConcurrencyGate(10, initial=10, clock=clock, quiet=30.0, on_change=changes.append)
    gate.on_throttled()
    clock.advance(2.0)
    gate.on_throttled()
    assert changes == [ThrottlingStarted(7)]
    clock.advance(29.0)
    gate.on_success()
    assert len(changes) == 1  # 29 s quiet: not yet
    clock.advance(1.0)
    gate.on_success()
    assert changes[1] == ThrottlingEnded(seconds=2.0, throttled=2, limit=5)
    assert not gate.throttling
    clock.advance(100.0)
    gate.on_throttled()
    assert changes[2] == ThrottlingStarted(3)  # a new episode is reported again


def test_finish_reports_an_open_episode_once() -> None:
    clock = Clock()
    changes: list[ThrottleChange] = []
    gate = ConcurrencyGate(10, initial=10, clock=clock, on_change=changes.append)
    gate.finish()
    assert changes == []
    gate.on_throttled()
    gate.finish()
    gate.finish()
    assert changes == [ThrottlingStarted(7), ThrottlingEnded(0.0, 1, 7)]


def test_acquire_times_out_when_no_slot_frees() -> None:
    gate = ConcurrencyGate(1)
    assert gate.acquire(timeout=1.0)
    started = time.monotonic()
    assert not gate.acquire(timeout=0.05)
    assert 0.04 <= time.monotonic() - started < 1.0


def test_release_wakes_a_waiter() -> None:
    gate = ConcurrencyGate(1)
    gate.acquire()
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(gate.acquire(timeout=5.0)))
    waiter.start()
    time.sleep(0.05)
    assert got == []
    gate.release()
    waiter.join(timeout=5.0)
    assert got == [True]


def test_cancel_wakes_every_waiter_at_once() -> None:
    gate = ConcurrencyGate(1)
    gate.acquire()
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            gate.acquire(timeout=30.0)
        except GateCancelledError as exc:
            errors.append(exc)

    waiters = [threading.Thread(target=wait) for _ in range(4)]
    for waiter in waiters:
        waiter.start()
    time.sleep(0.05)
    started = time.monotonic()
    gate.cancel()
    for waiter in waiters:
        waiter.join(timeout=5.0)
    assert time.monotonic() - started < 1.0
    assert len(errors) == 4
    with pytest.raises(GateCancelledError):
        gate.try_acquire()


def test_threads_never_exceed_the_limit_while_it_shrinks() -> None:
    gate = ConcurrencyGate(16)
    peak = 0
    lock = threading.Lock()

    def work(index: int) -> None:
        nonlocal peak
        for n in range(50):
            gate.acquire(timeout=10.0)
            with lock:
                peak = max(peak, gate.in_flight)
            if (index + n) % 7 == 0:
                gate.on_throttled()
            else:
                gate.on_success()
            gate.release()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30.0)
    assert peak <= 16
    assert gate.in_flight == 0
    assert gate.throttled_total == sum(1 for i in range(32) for n in range(50) if (i + n) % 7 == 0)


def test_release_without_acquire_is_a_bug() -> None:
    with pytest.raises(RuntimeError):
        ConcurrencyGate(2).release()


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("SlowDown", 503, True),
        ("Throttling", 400, True),
        (None, 429, True),
        ("ServiceUnavailable", 503, False),
        (None, 503, False),
        ("InternalError", 500, False),
    ],
)
def test_is_throttling(code: str | None, status: int | None, expected: bool) -> None:
    assert is_throttling(code, status) is expected


def test_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError):
        ConcurrencyGate(0)
    with pytest.raises(ValueError):
        ConcurrencyGate(4, decrease=1.0)


class ThrottledError(Exception):
    pass


class TransientError(Exception):
    pass


class BrokenError(Exception):
    pass


class RecordingStop(threading.Event):
    """A stop event whose waits return at once and are recorded."""

    def __init__(self, stop_after: int | None = None, clock: Clock | None = None) -> None:
        super().__init__()
        self.waits: list[float] = []
        self.stop_after = stop_after
        self.clock = clock

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout or 0.0)
        if self.clock is not None:
            self.clock.advance(timeout or 0.0)
        if self.stop_after is not None and len(self.waits) >= self.stop_after:
            self.set()
        return self.is_set()


def answers(*outcomes: BaseException | str) -> tuple[list[int], object]:
    calls: list[int] = []

    def send() -> str:
        calls.append(1)
        outcome = outcomes[len(calls) - 1]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return calls, send


def send(gate: ConcurrencyGate, fn: object, stop: threading.Event, attempts: int = 5) -> str:
    return send_with_retries(
        gate,
        fn,  # type: ignore[arg-type]
        is_throttled=lambda exc: isinstance(exc, ThrottledError),
        is_retryable=lambda exc: isinstance(exc, TransientError),
        policy=RetryPolicy(max_attempts=attempts),
        stop=stop,
        rng=lambda: 0.5,
    )


def test_send_succeeds_at_once() -> None:
    gate = ConcurrencyGate(8, initial=4)
    calls, fn = answers("etag")
    assert send(gate, fn, RecordingStop()) == "etag"
    assert calls == [1]
    assert gate.in_flight == 0
    assert gate.limit == 5  # slow start: + 1 per success


def test_send_retries_throttles_with_botocore_backoff_and_lowers_the_gate() -> None:
    clock = Clock()
    gate = ConcurrencyGate(10, initial=10, clock=clock)
    stop = RecordingStop(clock=clock)  # the backoff passes on the gate's clock
    calls, fn = answers(ThrottledError(), ThrottledError(), TransientError(), "etag")
    assert send(gate, fn, stop) == "etag"
    assert len(calls) == 4
    assert stop.waits == [0.5, 1.0, 0.1]  # 0.5 * 1 s * 2**i after throttles; 0.05 s scale else
    assert gate.throttled_total == 2
    assert gate.limit == 5  # 10 * 0.7 * 0.7 = 4.9, + 1/4.9 for the success
    assert gate.in_flight == 0


def test_send_gives_up_after_max_attempts() -> None:
    gate = ConcurrencyGate(4)
    calls, fn = answers(ThrottledError(), ThrottledError(), ThrottledError())
    with pytest.raises(ThrottledError):
        send(gate, fn, RecordingStop(), attempts=3)
    assert len(calls) == 3
    assert gate.in_flight == 0


def test_send_raises_other_errors_at_once() -> None:
    gate = ConcurrencyGate(4)
    calls, fn = answers(BrokenError(), "never")
    with pytest.raises(BrokenError):
        send(gate, fn, RecordingStop())
    assert calls == [1]
    assert gate.throttled_total == 0
    assert gate.in_flight == 0


def test_a_stop_during_the_backoff_ends_the_retries() -> None:
    gate = ConcurrencyGate(4)
    calls, fn = answers(ThrottledError(), "never")
    with pytest.raises(ThrottledError):
        send(gate, fn, RecordingStop(stop_after=1))
    assert calls == [1]
    assert gate.in_flight == 0


def test_send_on_a_cancelled_gate_starts_nothing() -> None:
    gate = ConcurrencyGate(4)
    gate.cancel()
    calls, fn = answers("never")
    with pytest.raises(GateCancelledError):
        send(gate, fn, RecordingStop())
    assert calls == []


def test_retry_policy_needs_one_attempt() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
    assert RetryPolicy().delay(10, True, lambda: 1.0) == 20.0  # capped
