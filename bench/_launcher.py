"""Start one tool from a small process and report its wall time and rusage.

Run as ``python -I -S _launcher.py REPORT_FD [--pty] CMD ARGS...`` (stdlib only).

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

With ``--pty`` the tool's stdin, stdout and stderr are the slave side of a new pseudo-terminal
(120 x 40, ``TERM`` defaulting to ``xterm-256color``), so it sees a terminal as a user's shell
would give it; a thread copies everything it prints from the master side to this process's
stdout (the log file). That copying is this process's CPU, not the tool's.
"""

import fcntl
import os
import pty
import signal
import struct
import sys
import termios
import threading
import time

_WINSIZE = (40, 120)  # rows, columns


def _drain(master: int) -> None:
    """Copy the pseudo-terminal's output to stdout until the last slave descriptor closes."""
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the tool (and every process holding the slave) has exited
            return
        if not data:
            return
        os.write(1, data)


def _open_pty() -> tuple[int, int]:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", *_WINSIZE, 0, 0))
    return master, slave


def _ignore(_signum: int, _frame: object) -> None:
    return


def main() -> int:
    report_fd = int(sys.argv[1])
    argv = sys.argv[2:]
    use_pty = argv[:1] == ["--pty"]
    if use_pty:
        argv = argv[1:]
    os.set_inheritable(report_fd, False)
    env = dict(os.environ)
    actions = []
    master = slave = -1
    if use_pty:
        master, slave = _open_pty()
        env.setdefault("TERM", "xterm-256color")
        actions = [(os.POSIX_SPAWN_DUP2, slave, fd) for fd in (0, 1, 2)]
    signal.signal(signal.SIGTERM, _ignore)
    signal.signal(signal.SIGINT, _ignore)
    t0 = time.monotonic()
    # Like subprocess (restore_signals): Python ignores SIGPIPE/SIGXFSZ, the tool must not.
    defaults = [getattr(signal, name) for name in ("SIGPIPE", "SIGXFSZ") if hasattr(signal, name)]
    pid = os.posix_spawn(argv[0], argv, env, setsigdef=defaults, file_actions=actions)
    os.write(report_fd, f"start {t0!r}\n".encode())
    drainer = None
    if use_pty:
        os.close(slave)  # the tool holds the only slave descriptors now: EIO on master at exit
        drainer = threading.Thread(target=_drain, args=(master,), daemon=True)
        drainer.start()
    while True:
        try:
            _, status, usage = os.wait4(pid, 0)
            break
        except InterruptedError:  # pragma: no cover - PEP 475 retries, kept for clarity
            continue
    t1 = time.monotonic()
    if drainer is not None:
        drainer.join(5)
    os.write(
        report_fd,
        f"end {t1!r} {status} {usage.ru_utime!r} {usage.ru_stime!r} {usage.ru_maxrss}\n".encode(),
    )
    os.close(report_fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
