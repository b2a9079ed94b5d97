"""The ``spool_tool`` command and ``python -m spool_tool``.

Loading the modules takes a few tenths of a second. A Ctrl-C (SIGINT) in that time ends the
process as the signal does (the shell sees 130), instead of printing a KeyboardInterrupt
traceback from deep in an import; nothing has been touched yet. Once loaded, the CLI's own
handling applies (exit 130 without a traceback, or the run's graceful stop).

Once loaded, the modules' objects are moved out of the garbage collector's sight
(``gc.freeze``: they live as long as the process) and the youngest generation is collected
every 10,000 allocations instead of 700: a run allocates a few dozen short-lived objects per
file, almost none in cycles, and the collector's passes over them cost ~5% of the CPU of a run
of small files (py-spy: ``gc_collect_main``). Cycles are still collected, so a daemon's memory
stays flat (``bench.soak``). Only the command does this; the library's callers keep their own.
"""

import gc
import signal
import sys

GEN0_THRESHOLD = 10_000


def entry() -> int:
    previous = signal.signal(signal.SIGINT, signal.SIG_DFL)
    from spool_tool.cli import main  # noqa: PLC0415 - imported with SIGINT at its default

    signal.signal(signal.SIGINT, previous)
    gc.freeze()
    gc.set_threshold(GEN0_THRESHOLD, *gc.get_threshold()[1:])
    return main()


if __name__ == "__main__":
    sys.exit(entry())
