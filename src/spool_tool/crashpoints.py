"""Test-only crash points: ``SPOOL_TOOL_CRASH_AT=<point>`` SIGKILLs the process there.

Armed only when ``SPOOL_TOOL_TESTING=1`` is also set, so a stray variable in production cannot
kill a run. ``SPOOL_TOOL_CRASH_SKIP=N`` lets the point pass N times first.
Points: after_claim, mid_upload, after_upload, after_link (the file is in both new/ and
completed/), after_marker_link (its marker too), after_move, mid_cleanup, and for --manifest
before_manifest_claim, after_manifest_claim, after_manifest_put.
"""

from __future__ import annotations

import os
import signal
import threading

_ARMED = os.environ.get("SPOOL_TOOL_TESTING") == "1"
_POINT = os.environ.get("SPOOL_TOOL_CRASH_AT", "") if _ARMED else ""
_lock = threading.Lock()
_skip = int(os.environ.get("SPOOL_TOOL_CRASH_SKIP", "0") or 0) if _ARMED else 0


def crash_point(name: str) -> None:
    global _skip  # noqa: PLW0603 - process-wide countdown, test-only
    if name != _POINT:
        return
    with _lock:
        if _skip > 0:
            _skip -= 1
            return
    os.kill(os.getpid(), signal.SIGKILL)
