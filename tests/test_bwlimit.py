"""--bwlimit: size parsing, the shared token bucket, bodies charged whole, cancellation."""

from __future__ import annotations

import heapq
import threading
import time

import pytest

from spool_tool.bwlimit import (
    BandwidthCancelledError,
    BandwidthLimiter,
    parse_rate,
)
from spool_tool.sizes import to_bytes

MIB = 1 << 20
CHUNK = 256 * 1024  # a greedy reader's unit in the simulations


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8388608", 8388608),
        ("512K", 512 * 1024),
        ("512KiB", 512 * 1024),
        ("20M", 20 * MIB),
        ("20mb", 20 * MIB),
        ("1.5G", 3 * (1 << 29)),
        (" 2 MiB ", 2 * MIB),
        ("1T", 1 << 40),
        ("0.5K", 512),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert to_bytes(text) == expected


@pytest.mark.parametrize("text", ["", "M", "-1M", "1.5", "1,5M", "1e6", "20 Mbit", "1.M"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"size|fraction"):
        to_bytes(text)


def test_parse_rate() -> None:
    assert parse_rate("20M") == 20 * MIB
    with pytest.raises(ValueError, match="at least 1K"):
        parse_rate("100")
    with pytest.raises(ValueError, match="expected bytes or a size"):
        parse_rate("fast")


def test_bucket_starts_empty_and_refills_at_the_rate() -> None:
    clock = Clock()
    limiter = BandwidthLimiter(1000 * 1024, clock=clock)
    assert limiter.reserve(1024) == pytest.approx(0.001)  # no initial burst
    clock.now += 1.0
    assert limiter.reserve(200 * 1024) == 0.0  # refilled up to the burst (0.2 s of the rate)
    assert limiter.reserve(100 * 1024) == pytest.approx(0.1)


def test_refill_is_capped_at_the_burst() -> None:
    clock = Clock()
    limiter = BandwidthLimiter(10 * MIB, clock=clock)
    assert limiter.burst == 2 * MIB  # 0.2 s of the rate
    clock.now += 3600.0  # an idle hour earns no more than one burst
    assert limiter.reserve(2 * MIB) == 0.0
    assert limiter.reserve(MIB) == pytest.approx(0.1)


def test_a_request_larger_than_the_bucket_pays_its_debt() -> None:
    clock = Clock()
    limiter = BandwidthLimiter(MIB, clock=clock)
    assert limiter.reserve(16 * MIB) == pytest.approx(16.0)
    assert limiter.reserve(MIB) == pytest.approx(17.0)  # queued behind the debt


def test_consume_with_timeout_refunds_what_it_could_not_take() -> None:
    clock = Clock()
    limiter = BandwidthLimiter(MIB, clock=clock)
    assert not limiter.consume(4 * MIB, timeout=1.0)
    assert limiter.consumed == 0
    assert limiter.reserve(MIB // 2) == pytest.approx(0.5)


def _simulate(
    rate: int, workers: int, body: int, *, whole: bool, seconds: float = 100.0
) -> list[tuple[float, int]]:
    """Workers that read a body, then send it at once (obstore, botocore with bytes), on a
    fake clock, event by event. ``whole``: the body is charged once before it is read; else
    chunk by chunk as it is read. Returns (time sent, bytes) per body."""
    clock = Clock()
    start = clock.now
    limiter = BandwidthLimiter(rate, clock=clock)
    ready = [(start + i * 0.0001, i, 0) for i in range(workers)]  # (time, worker, bytes read)
    sent: list[tuple[float, int]] = []
    while ready:
        at, worker, done = heapq.heappop(ready)
        if at - start > seconds:
            break
        clock.now = at
        if whole:
            wait, done = limiter.reserve(body), body
        else:
            wait, done = limiter.reserve(CHUNK), done + CHUNK
        if done >= body:
            sent.append((at + wait - start, body))
            heapq.heappush(ready, (at + wait + 0.01, worker, 0))  # 10 ms to send it
        else:
            heapq.heappush(ready, (at + wait, worker, done))
    return sent


def _worst_window(sent: list[tuple[float, int]], rate: int, windows: int = 80) -> float:
    """The largest relative deviation from the rate over 10 s windows starting each second."""
    worst = 0.0
    for first in range(windows):
        window = sum(n for t, n in sent if first <= t < first + 10)
        worst = max(worst, abs(window - rate * 10) / (rate * 10))
    return worst


@pytest.mark.parametrize(
    ("workers", "body"), [(1, CHUNK), (64, 64 * 1024), (64, MIB), (64, 16 * MIB), (4, 20 * MIB)]
)
def test_bodies_charged_whole_keep_every_ten_second_window_within_ten_percent(
    workers: int, body: int
) -> None:
    rate = 20 * MIB
    assert body <= rate  # at most one second of the rate: one body is <= 10% of a window
    assert _worst_window(_simulate(rate, workers, body, whole=True), rate) <= 0.10


def test_charging_concurrent_bodies_chunk_by_chunk_would_burst() -> None:
    """Why whole bodies are charged before reading: 64 workers each reading a 16 MiB body
    at 1/64 of the rate finish together and send 1 GiB at once."""
    rate = 20 * MIB
    assert _worst_window(_simulate(rate, 64, 16 * MIB, whole=False), rate) > 1.0


def test_an_idle_spell_earns_at_most_one_burst() -> None:
    clock = Clock()
    rate = 20 * MIB
    limiter = BandwidthLimiter(rate, clock=clock)
    clock.now += 30.0  # idle
    started, released = clock.now, 0
    while True:  # one greedy reader for the next 10 s
        wait = limiter.reserve(CHUNK)
        if clock.now + wait - started > 10.0:
            break
        released += CHUNK
        clock.now += wait
    assert released <= rate * 10 + limiter.burst
    assert released <= 1.03 * rate * 10


def test_cancel_interrupts_a_waiting_consume() -> None:
    limiter = BandwidthLimiter(1024)  # 1 KiB/s: 64 KiB would take a minute
    errors: list[BaseException] = []

    def send() -> None:
        try:
            limiter.consume(65536)
        except BandwidthCancelledError as exc:
            errors.append(exc)

    sender = threading.Thread(target=send)
    sender.start()
    time.sleep(0.05)
    started = time.monotonic()
    limiter.cancel()
    sender.join(timeout=5.0)
    assert time.monotonic() - started < 1.0
    assert len(errors) == 1
    with pytest.raises(BandwidthCancelledError):
        limiter.consume(1)


def test_real_time_rate_with_concurrent_whole_bodies() -> None:
    """8 threads send 256 KiB bodies through one 8 MiB/s bucket for ~1.5 s of real time."""
    rate = 8 * MIB
    limiter = BandwidthLimiter(rate)
    done = [0] * 8
    started = time.monotonic()
    stop_at = started + 1.5

    def work(index: int) -> None:
        while time.monotonic() < stop_at:
            limiter.consume(CHUNK)
            done[index] += CHUNK

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10.0)
    elapsed = time.monotonic() - started
    assert abs(sum(done) - rate * elapsed) <= 0.10 * rate * elapsed


def test_rejects_a_rate_of_zero() -> None:
    with pytest.raises(ValueError):
        BandwidthLimiter(0)
