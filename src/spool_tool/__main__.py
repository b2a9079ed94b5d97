"""The ``spool_tool`` command and ``python -m spool_tool``.

Loading the modules takes a few tenths of a second. A Ctrl-C (SIGINT) in that time ends the
process as the signal does (the shell sees 130), instead of printing a KeyboardInterrupt
traceback from deep in an import; nothing has been touched yet. Once loaded, the CLI's own
handling applies (exit 130 without a traceback, or the run's graceful stop).
"""

import signal
import sys


def entry() -> int:
    previous = signal.signal(signal.SIGINT, signal.SIG_DFL)
    from spool_tool.cli import main  # noqa: PLC0415 - imported with SIGINT at its default

    signal.signal(signal.SIGINT, previous)
    return main()


if __name__ == "__main__":
    sys.exit(entry())
