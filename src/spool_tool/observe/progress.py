"""A live progress line on a terminal (text logs only; never in cron mail or JSON mode).

It appears with the first upload (no flicker for runs with nothing to do) and vanishes at the
end; log lines are printed above it through the same rich console.
"""

from __future__ import annotations

import time
from typing import IO, TYPE_CHECKING, Self

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from spool_tool.events import Event, FileFailed, FileUploaded, RunFinished

if TYPE_CHECKING:
    from types import TracebackType


class ConsoleStream:
    """A text stream that prints through a rich console, so lines do not tear the live bar."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def write(self, text: str) -> int:
        self.console.print(text.rstrip("\n"), markup=False, highlight=False, soft_wrap=True)
        return len(text)

    def flush(self) -> None:
        return None


class ProgressDisplay:
    def __init__(self, stream: IO[str]) -> None:
        self.console = Console(file=stream, stderr=True)
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self._task: TaskID | None = None
        self._files = 0
        self._bytes = 0
        self._failed = 0
        self._started = time.monotonic()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        if self._task is not None:
            self.progress.stop()
            self._task = None

    def __call__(self, event: Event) -> None:
        match event:
            case FileUploaded(size=size):
                self._files += 1
                self._bytes += size
            case FileFailed():
                self._failed += 1
            case RunFinished():
                self.stop()
                return
            case _:
                return
        if self._task is None:
            self.progress.start()
            self._task = self.progress.add_task("")
        rate = self._files / max(time.monotonic() - self._started, 1e-6)
        self.progress.update(
            self._task,
            description=f"uploaded {self._files} files, {self._bytes / 1e6:.1f} MB, "
            f"{rate:.0f} files/s, {self._failed} failed",
        )
