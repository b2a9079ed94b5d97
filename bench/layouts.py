"""The per-file job without spool_tool's code: its syscalls and one obstore PUT, in two thread
layouts and with two kinds of body, to find the CPU floor a layout can reach.

    python -m devtools.seaweed run --bucket bench -- \\
        python -m bench.layouts --layout workers,split --body bytes --rounds 3

Per file, as the pipeline does: open (O_NOFOLLOW), fstat, pread of size + 1, PUT, then fstat,
lstat by name, link into ``completed/``, unlink from ``new/``, utime, close. No journal, no
events, no logging. ``workers``: ``--concurrency`` threads each do the whole job for the next
file (spool_tool's layout); ``split``: one thread does the local steps and hands bodies to
``--concurrency`` PUT threads over ``queue.SimpleQueue`` (and takes the results back).
``--body procfd``: obstore reads the file itself through ``/proc/self/fd/N`` (the same inode as
the open descriptor) instead of a ``bytes`` body. The spool is generated afresh before each run
(not timed); layouts alternate within each round. Prints wall, CPU per file (getrusage, this
process) and context switches per file.
"""

from __future__ import annotations

import argparse
import os
import queue
import resource
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import obstore

from bench.measure import put_all
from bench.obstore_alone import _store

Job = tuple[str, int, os.stat_result]


class Spool:
    def __init__(self, root: Path, files: int, size: int) -> None:
        self.new, self.completed = root / "new", root / "completed"
        shutil.rmtree(root, ignore_errors=True)
        self.new.mkdir(parents=True)
        self.completed.mkdir()
        body = os.urandom(size)
        for i in range(files):
            (self.new / f"f{i:06d}").write_bytes(body)
        os.sync()
        self.names = sorted(os.listdir(self.new))

    def before(self, name: str) -> tuple[int, os.stat_result, bytes]:
        fd = os.open(f"{self.new}/{name}", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        st = os.fstat(fd)
        return fd, st, os.pread(fd, st.st_size + 1, 0)

    def after(self, name: str, fd: int, st: os.stat_result) -> None:
        again, by_name = os.fstat(fd), os.lstat(f"{self.new}/{name}")
        if not again.st_ino == by_name.st_ino == st.st_ino:
            raise RuntimeError(f"{name} changed")
        os.link(f"{self.new}/{name}", f"{self.completed}/{name}", follow_symlinks=False)
        os.unlink(f"{self.new}/{name}")
        os.utime(f"{self.completed}/{name}", follow_symlinks=False)
        os.close(fd)


Put = Callable[[str, int, bytes], None]


def workers(spool: Spool, put: Put, threads: int) -> None:
    def one(name: str) -> None:
        fd, st, data = spool.before(name)
        put(name, fd, data)
        spool.after(name, fd, st)

    put_all(one, spool.names, threads)


def split(spool: Spool, put: Put, threads: int) -> None:
    todo: queue.SimpleQueue[tuple[str, int, os.stat_result, bytes] | None] = queue.SimpleQueue()
    done: queue.SimpleQueue[Job] = queue.SimpleQueue()

    def uploader() -> None:
        while (item := todo.get()) is not None:
            name, fd, st, data = item
            put(name, fd, data)
            done.put((name, fd, st))

    pool = [threading.Thread(target=uploader) for _ in range(threads)]
    for thread in pool:
        thread.start()
    in_flight = 0
    for name in spool.names:
        while in_flight >= threads:
            spool.after(*done.get())
            in_flight -= 1
        fd, st, data = spool.before(name)
        todo.put((name, fd, st, data))
        in_flight += 1
    for _ in range(in_flight):
        spool.after(*done.get())
    for _ in pool:
        todo.put(None)
    for thread in pool:
        thread.join()


LAYOUTS = {"workers": workers, "split": split}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.layouts", description=__doc__)
    parser.add_argument("--layout", default="workers,split", help="comma-separated")
    parser.add_argument("--body", choices=("bytes", "procfd"), default="bytes")
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bucket", default="bench")
    parser.add_argument("--tmpdir", default=None)
    args = parser.parse_args(argv)
    store = _store(args.bucket)
    layouts = args.layout.split(",")

    for round_ in range(args.rounds):
        for layout in layouts:
            prefix = secrets.token_hex(4)

            def put(name: str, fd: int, data: bytes, prefix: str = prefix) -> None:
                body = Path(f"/proc/self/fd/{fd}") if args.body == "procfd" else data
                obstore.put(store, f"{prefix}/{name}", body, use_multipart=False)

            with tempfile.TemporaryDirectory(dir=args.tmpdir) as root:
                spool = Spool(Path(root) / "spool", args.files, args.size)
                before = resource.getrusage(resource.RUSAGE_SELF)
                started = time.perf_counter()
                LAYOUTS[layout](spool, put, args.concurrency)
                wall = time.perf_counter() - started
                after = resource.getrusage(resource.RUSAGE_SELF)
                if os.listdir(spool.new):
                    raise RuntimeError("files left in new/")
            cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
            switches = after.ru_nvcsw - before.ru_nvcsw + after.ru_nivcsw - before.ru_nivcsw
            print(
                f"round {round_} {layout:8} body={args.body}: wall {wall:.2f} s, CPU "
                f"{cpu / args.files * 1000:.3f} ms/file, {switches / args.files:.1f} context "
                "switches/file",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
