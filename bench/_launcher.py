"""Start one tool from a small process and report its wall time and rusage.

Run as ``python -I -S _launcher.py REPORT_FD CMD ARGS...`` (stdlib only, nothing else imported).

Why not Popen + wait4 straight from the benchmark process: Linux carries the RSS high-water mark
of the memory image a process had *before* exec into its ``ru_maxrss`` (fork copies the parent's
page tables; vfork/posix_spawn share the parent's mm, whose peak is recorded at exec). Spawned
from the benchmark process (boto3 loaded, 100k-key listings) every tool would show the
benchmark's own 80-100 MiB as its peak RSS. Spawned from this bare interpreter, the floor is
this process's ~10 MiB, which the report states.

Writes to REPORT_FD: ``start T0`` right after spawning, and after the tool exited
``end T1 STATUS UTIME STIME MAXRSS_KIB`` (T = time.monotonic(), which is system-wide, so the
benchmark can relate its own observations to T0). SIGTERM/SIGINT to this process are ignored
via a handler (reset to default in the tool by exec), so a process-group SIGTERM reaches the tool
and this process still reports.
"""

import os
import signal
import sys
import time


def _ignore(_signum: int, _frame: object) -> None:
    return


def main() -> int:
    report_fd = int(sys.argv[1])
    argv = sys.argv[2:]
    os.set_inheritable(report_fd, False)
    signal.signal(signal.SIGTERM, _ignore)
    signal.signal(signal.SIGINT, _ignore)
    t0 = time.monotonic()
    # Like subprocess (restore_signals): Python ignores SIGPIPE/SIGXFSZ, the tool must not.
    defaults = [getattr(signal, name) for name in ("SIGPIPE", "SIGXFSZ") if hasattr(signal, name)]
    pid = os.posix_spawn(argv[0], argv, os.environ, setsigdef=defaults)
    os.write(report_fd, f"start {t0!r}\n".encode())
    while True:
        try:
            _, status, usage = os.wait4(pid, 0)
            break
        except InterruptedError:  # pragma: no cover - PEP 475 retries, kept for clarity
            continue
    t1 = time.monotonic()
    os.write(
        report_fd,
        f"end {t1!r} {status} {usage.ru_utime!r} {usage.ru_stime!r} {usage.ru_maxrss}\n".encode(),
    )
    os.close(report_fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
