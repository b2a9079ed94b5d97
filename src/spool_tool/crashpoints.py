"""Test seams, armed only when ``SPOOL_TOOL_TESTING=1`` is also set, so a stray variable in
production changes nothing. ``SEAMS`` names every variable (``options`` never warns of them).

``SPOOL_TOOL_CRASH_AT=<point>`` SIGKILLs the process there; ``SPOOL_TOOL_CRASH_SKIP=N`` lets
the point pass N times first. Points: after_claim, mid_upload, after_upload, after_link (the
file is in both new/ and completed/), after_marker_link (its marker too), after_move,
mid_cleanup, and for --manifest before_manifest_claim, after_manifest_claim, after_manifest_put.

``SPOOL_TOOL_TEST_MAX_WATCHES=N``: ``--watch`` acts as if the kernel's inotify watch limit
were N watches (``watch.Notifier(max_watches=)``), as a test cannot lower the kernel's.
"""

from __future__ import annotations

import os
import signal
import threading

TESTING = "SPOOL_TOOL_TESTING"
CRASH_AT = "SPOOL_TOOL_CRASH_AT"
CRASH_SKIP = "SPOOL_TOOL_CRASH_SKIP"
MAX_WATCHES = "SPOOL_TOOL_TEST_MAX_WATCHES"
SEAMS = frozenset({TESTING, CRASH_AT, CRASH_SKIP, MAX_WATCHES})

_ARMED = os.environ.get(TESTING) == "1"
_POINT = os.environ.get(CRASH_AT, "") if _ARMED else ""
_lock = threading.Lock()
_skip = int(os.environ.get(CRASH_SKIP, "0") or 0) if _ARMED else 0


def crash_point(name: str) -> None:
    global _skip  # noqa: PLW0603 - process-wide countdown, test-only
    if name != _POINT:
        return
    with _lock:
        if _skip > 0:
            _skip -= 1
            return
    os.kill(os.getpid(), signal.SIGKILL)


def max_watches() -> int | None:
    """The inotify watch limit a test set (None: the kernel's)."""
    value = os.environ.get(MAX_WATCHES, "") if _ARMED else ""
    return int(value) if value else None
