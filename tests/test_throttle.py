"""ConcurrencyGate: AIMD under throttling, pause at a limit of 1, reports, bounded waits."""

from __future__ import annotations

import math
import threading
import time

import pytest

from spool_tool.throttle import (
    ConcurrencyGate,
    GateCancelledError,
    ThrottleChange,
    ThrottlingEnded,
    ThrottlingStarted,
    is_throttling,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_starts_at_maximum_and_bounds_slots() -> None:
    gate = ConcurrencyGate(3, clock=Clock())
    assert gate.limit == 3
    assert [gate.try_acquire() for _ in range(4)] == [0.0, 0.0, 0.0, math.inf]
    gate.release()
    assert gate.try_acquire() == 0.0
    assert gate.in_flight == 3


def test_throttle_decreases_multiplicatively_once_per_cooldown() -> None:
    clock = Clock()
    gate = ConcurrencyGate(64, clock=clock, cooldown=1.0)
    for _ in range(20):  # a burst of 503s from the requests already in flight
        gate.on_throttled()
    assert gate.limit == 44  # 64 * 0.7, once
    assert gate.throttled_total == 20
    clock.advance(1.0)
    gate.on_throttled()
    assert gate.limit == 31  # 44.8 * 0.7


def test_success_grows_back_about_one_slot_per_window() -> None:
    clock = Clock()
    gate = ConcurrencyGate(64, clock=clock, initial=10)
    for _ in range(10):
        gate.on_success()
    assert gate.limit == 10  # 10 successes at a window of 10: just under one slot
    gate.on_success()
    assert gate.limit == 11
    for _ in range(10_000):
        gate.on_success()
    assert gate.limit == 64  # never above the maximum


def test_limit_stops_at_one_then_start_pause_doubles_up_to_max() -> None:
    clock = Clock()
    gate = ConcurrencyGate(4, clock=clock, max_pause=2.0, min_pause=0.01)
    for _ in range(5):
        gate.on_throttled()
        clock.advance(1.0)
    assert gate.limit == 1
    assert gate.pause > 0
    for _ in range(20):
        gate.on_throttled()
    assert gate.limit == 1
    assert gate.pause == 2.0


def test_pause_spaces_request_starts() -> None:
    clock = Clock()
    gate = ConcurrencyGate(1, clock=clock)
    for _ in range(3):
        gate.on_throttled()  # pause 0.01 -> 0.02 -> 0.04
    assert gate.pause == pytest.approx(0.04)
    assert gate.try_acquire() == 0.0
    gate.release()
    assert gate.try_acquire() == pytest.approx(0.04)
    clock.advance(0.04)
    assert gate.try_acquire() == 0.0


def test_pause_decays_to_zero_before_the_limit_grows() -> None:
    clock = Clock()
    gate = ConcurrencyGate(8, clock=clock, initial=1, min_pause=0.01)
    gate.on_throttled()
    gate.on_throttled()
    assert gate.pause == pytest.approx(0.02)
    successes = 0
    while gate.pause > 0:
        assert gate.limit == 1
        gate.on_success()
        successes += 1
    assert successes == 11  # 0.02 * (15/16)^11 < 0.01: a gentle decay
    gate.on_success()
    assert gate.limit == 2


def test_started_once_and_ended_after_quiet_period() -> None:
    clock = Clock()
    changes: list[ThrottleChange] = []
    gate = ConcurrencyGate(10, clock=clock, quiet=30.0, on_change=changes.append)
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
    gate = ConcurrencyGate(10, clock=clock, on_change=changes.append)
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
    gate = ConcurrencyGate(16, cooldown=0.0)
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
    assert gate.throttled_total == sum(
        1 for i in range(32) for n in range(50) if (i + n) % 7 == 0
    )


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
