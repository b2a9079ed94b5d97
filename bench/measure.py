"""Run one tool as a child process and measure it in isolation.

Each tool is started by ``bench/_launcher.py``, a bare ``python -I -S`` process that
posix_spawns the tool, reaps it with ``os.wait4`` and reports (over a pipe) the tool's wall time
(spawn to reap), CPU seconds (user + sys) and peak RSS from that rusage - the tool's own, plus any
children the tool reaped itself. See the launcher's docstring for why the benchmark process does
not spawn the tools directly (ru_maxrss would include the benchmark's own RSS).

The launcher gets its own session/process group, so a timeout or Ctrl-C can stop the whole tree
(the launcher survives SIGTERM to report; SIGKILL, 10 s later, takes both down). Its exit is
first observed with ``waitid(WNOWAIT)`` (the zombie keeps its pid and group reserved), so the
killer can never signal a recycled process group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

LAUNCHER = Path(__file__).resolve().parent / "_launcher.py"
_KILL_GRACE = 10.0


@dataclass(frozen=True)
class ChildResult:
    started: float  # time.monotonic() when the tool was spawned
    wall: float  # seconds from spawning the tool until it was reaped
    user: float  # CPU seconds
    sys: float
    maxrss_kib: int  # peak resident set size (Linux reports KiB)
    returncode: int  # negative: killed by that signal
    timed_out: bool
    measured: bool  # False: the launcher was killed, figures are the benchmark's own guesses

    @property
    def cpu(self) -> float:
        return self.user + self.sys


def launcher_command(report_fd: int, cmd: list[str], *, pty: bool = False) -> list[str]:
    return [
        sys.executable, "-I", "-S", str(LAUNCHER), str(report_fd), *(["--pty"] if pty else []),
        *cmd,
    ]  # fmt: skip


class Child:
    """A started tool process; ``wait()`` returns its measurements.

    With ``pty`` the tool runs on a pseudo-terminal whose output the launcher copies to
    ``log_path``; otherwise its stdout and stderr go to ``log_path`` directly.
    """

    def __init__(
        self, cmd: list[str], *, env: dict[str, str], log_path: Path, pty: bool = False
    ) -> None:
        self._lock = threading.Lock()
        self._exited = False
        self._timed_out = False
        read_fd, write_fd = os.pipe()
        self._report = os.fdopen(read_fd, "rb")
        try:
            with log_path.open("wb") as log:
                self.started = time.monotonic()
                self._proc = subprocess.Popen(
                    launcher_command(write_fd, cmd, pty=pty),
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    pass_fds=(write_fd,),
                )
        finally:
            os.close(write_fd)
        self.pid = self._proc.pid

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def has_exited(self) -> bool:
        """True once the tool (and so the launcher) has exited; not reaped yet."""
        if self._exited:
            return True
        info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        return info is not None

    def signal_group(self, sig: int) -> None:
        with self._lock:
            if not self._exited:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, sig)

    def _on_timeout(self) -> None:
        self._timed_out = True
        self.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + _KILL_GRACE
        while time.monotonic() < deadline:
            with self._lock:
                if self._exited:
                    return
            time.sleep(0.1)
        self.signal_group(signal.SIGKILL)

    def wait(self, timeout: float) -> ChildResult:
        """Wait for exit (SIGTERM at ``timeout``, SIGKILL 10 s later) and collect the report."""
        killer = threading.Timer(max(timeout, 0.0), self._on_timeout)
        killer.daemon = True
        killer.start()
        try:
            os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)
            observed = time.monotonic()
            with self._lock:
                self._exited = True
        except BaseException:  # Ctrl-C while waiting: take the tool down with us
            killer.cancel()
            with self._lock:
                if not self._exited:
                    os.killpg(self.pid, signal.SIGKILL)
                self._exited = True
            os.wait4(self.pid, 0)
            self._proc.returncode = -signal.SIGKILL
            self._report.close()
            raise
        killer.cancel()
        # Anything left in the process group (there should be nothing); the launcher is an
        # unreaped zombie, so the group id cannot have been recycled yet.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        _, status, usage = os.wait4(self.pid, 0)
        self._proc.returncode = os.waitstatus_to_exitcode(status)  # keep Popen from waiting
        with self._report:
            lines = self._report.read().decode().split("\n")
        start = next((ln.split() for ln in lines if ln.startswith("start ")), None)
        end = next((ln.split() for ln in lines if ln.startswith("end ")), None)
        if start is None or end is None:  # launcher killed (SIGKILL after a timeout)
            return ChildResult(
                started=self.started,
                wall=observed - self.started,
                user=usage.ru_utime,
                sys=usage.ru_stime,
                maxrss_kib=usage.ru_maxrss,
                returncode=self._proc.returncode,
                timed_out=self._timed_out,
                measured=False,
            )
        t0 = float(start[1])
        return ChildResult(
            started=t0,
            wall=float(end[1]) - t0,
            user=float(end[3]),
            sys=float(end[4]),
            maxrss_kib=int(end[5]),
            returncode=os.waitstatus_to_exitcode(int(end[2])),
            timed_out=self._timed_out,
            measured=True,
        )


def run_child(
    cmd: list[str], *, env: dict[str, str], log_path: Path, timeout: float, pty: bool = False
) -> ChildResult:
    return Child(cmd, env=env, log_path=log_path, pty=pty).wait(timeout)


def launcher_floor_kib() -> int:
    """Peak RSS the launcher reports for a trivial program: the floor of every RSS figure."""
    true = "/bin/true" if os.path.exists("/bin/true") else "/usr/bin/true"
    log = Path(os.devnull)
    result = Child([true], env=dict(os.environ), log_path=log).wait(30)
    return result.maxrss_kib


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float | None:
    """user + sys CPU seconds of a running process (here: the SeaweedFS server)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def process_peak_rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def put_all(put: Callable[[str], object], keys: Sequence[str], threads: int) -> None:
    """Call ``put(key)`` for every key from ``threads`` threads taking keys from one shared
    iterator (the engine's way of keeping requests in flight); a failure stops its thread
    and is raised after the others finish."""
    it = iter(keys)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work() -> None:
        while True:
            with lock:
                key = next(it, None)
            if key is None:
                return
            try:
                put(key)
            except BaseException as exc:  # reported after the batch
                errors.append(exc)
                return

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if errors:
        raise RuntimeError(f"{len(errors)} PUTs failed, first: {errors[0]!r}")
