"""Log lines are queued and written together (issue 10), yet none is late or lost."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from spool_tool.observe.logs import FLUSH_SECONDS, INFO, WARNING, LogWriter


class CountingStream:
    """A text stream that records each write (thread-safe: the flusher writes too)."""

    def __init__(self) -> None:
        self.writes: list[str] = []
        self.lock = threading.Lock()

    def write(self, text: str, /) -> int:
        with self.lock:
            self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        return None

    def text(self) -> str:
        with self.lock:
            return "".join(self.writes)


def test_info_lines_are_written_together_within_the_flush_interval() -> None:
    stream = CountingStream()
    writer = LogWriter(stream=stream)
    for i in range(100):
        writer.write(INFO, "uploaded", f"uploaded f{i}")
    assert stream.writes == []  # queued, not one write per line
    deadline = time.monotonic() + FLUSH_SECONDS + 5  # generous: the machine may be loaded
    while not stream.writes and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(stream.writes) == 1
    lines = stream.text().splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == [f"uploaded f{i}" for i in range(100)]


def test_batches_are_flushed_by_one_thread_not_a_thread_per_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each batch once started a Timer thread, and ``Thread.start`` waits for the thread to run
    while the writer is called with the event bus's lock held; one flusher serves every batch
    and every writer."""
    streams = [CountingStream(), CountingStream()]
    writers = [LogWriter(stream=stream) for stream in streams]
    started: list[str] = []
    real_start = threading.Thread.start

    def start(thread: threading.Thread) -> None:
        started.append(thread.name)
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    for batch in range(4):
        for writer in writers:
            writer.write(INFO, "uploaded", f"uploaded b{batch}")
        deadline = time.monotonic() + FLUSH_SECONDS + 5
        while not all(len(s.writes) > batch for s in streams):
            assert time.monotonic() < deadline, "a batch was not flushed"
            time.sleep(0.01)
    monkeypatch.undo()
    assert started in ([], ["log-flush"])  # at most the one flusher, once per process
    assert [len(s.writes) for s in streams] == [4, 4]


def test_a_warning_writes_the_queued_lines_before_it_in_order() -> None:
    stream = CountingStream()
    writer = LogWriter(stream=stream)
    writer.write(INFO, "uploaded", "uploaded a")
    writer.write(INFO, "uploaded", "uploaded b")
    writer.write(WARNING, "log", "S3 is slow")
    assert len(stream.writes) == 1
    assert [line.split(" ", 1)[1] for line in stream.text().splitlines()] == [
        "INFO uploaded a",
        "INFO uploaded b",
        "WARNING S3 is slow",
    ]


def test_the_summary_writes_at_once_and_every_record_stays_one_line() -> None:
    stream = CountingStream()
    writer = LogWriter(stream=stream)
    writer.write(INFO, "uploaded", "uploaded new/\nforged INFO line")
    writer.write(INFO, "summary", "summary: uploaded=1")
    lines = stream.text().splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("uploaded new/\\nforged INFO line")


def test_a_stream_switch_writes_the_queued_lines_to_the_old_stream() -> None:
    old, new = CountingStream(), CountingStream()
    writer = LogWriter(stream=old)
    writer.write(INFO, "uploaded", "uploaded a")
    writer.stream = new
    writer.write(INFO, "summary", "summary")
    assert old.text().endswith("uploaded a\n")
    assert new.text().endswith("summary\n")


def _child(code: str) -> str:
    script = (
        "import sys\n"
        "from spool_tool.observe.logs import INFO, LogWriter\n"
        "writer = LogWriter()\n"
        "writer.write(INFO, 'uploaded', 'uploaded last')\n" + code
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    return out.stderr


def test_no_line_is_lost_at_a_normal_exit() -> None:
    assert _child("").endswith("INFO uploaded last\n")


def test_no_line_is_lost_when_a_second_signal_exits_at_once() -> None:
    stderr = _child("from spool_tool.run import _exit_at_once\n_exit_at_once(15, None)\n")
    assert stderr.endswith("INFO uploaded last\n")
