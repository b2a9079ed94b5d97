"""EventBus: one event at a time, in order, every one delivered, also with ``wait=False``."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from spool_tool.events import Event, EventBus, FileMoved, RunStopped


def test_events_posted_from_many_threads_are_each_delivered_once_one_at_a_time() -> None:
    seen: list[Event] = []
    inside = 0
    overlapped = False

    def slow_listener(event: Event) -> None:
        nonlocal inside, overlapped
        inside += 1
        overlapped |= inside > 1
        time.sleep(0)  # let the GIL go, as a listener writing a log line does
        seen.append(event)
        inside -= 1

    bus = EventBus([slow_listener])

    def worker(n: int) -> None:
        for i in range(200):
            bus.emit(FileMoved(Path(f"{n}-{i}"), Path("c")), RunStopped(f"{n}-{i}"), wait=False)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not overlapped
    assert len(seen) == 16 * 200 * 2  # nothing left queued once the emitting threads are done
    for n in range(16):
        # Each thread's events in the order it emitted them, each pair together.
        mine = [e for e in seen if isinstance(e, FileMoved) and e.path.name.startswith(f"{n}-")]
        assert [e.path.name for e in mine] == [f"{n}-{i}" for i in range(200)]
    for first, second in zip(seen[::2], seen[1::2], strict=True):
        assert isinstance(first, FileMoved)
        assert isinstance(second, RunStopped)
        assert second.reason == first.path.name


def test_a_waiting_emit_returns_after_its_event_and_every_earlier_one_is_delivered() -> None:
    seen: list[str] = []
    entered, release = threading.Event(), threading.Event()

    def listener(event: Event) -> None:
        assert isinstance(event, RunStopped)
        if event.reason == "slow":
            entered.set()
            assert release.wait(10)
        seen.append(event.reason)

    bus = EventBus([listener])
    slow = threading.Thread(target=bus.emit, args=(RunStopped("slow"),))
    slow.start()
    assert entered.wait(10)
    bus.emit(RunStopped("posted"), wait=False)  # returns at once: the slow thread delivers it
    assert seen == []
    release.set()
    bus.emit(RunStopped("last"))  # waits for the delivering thread, then delivers its own
    slow.join()
    assert seen == ["slow", "posted", "last"]


def test_a_listener_may_emit() -> None:
    seen: list[str] = []
    bus = EventBus()

    def listener(event: Event) -> None:
        assert isinstance(event, RunStopped)
        seen.append(event.reason)
        if event.reason == "outer":
            bus.emit(RunStopped("inner"))

    bus.listeners.append(listener)
    bus.emit(RunStopped("outer"))
    assert seen == ["outer", "inner"]
