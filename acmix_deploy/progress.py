"""Progress of long steps: a live spinner with the phase and elapsed time on a terminal, one plain
line per phase in a log or pipe (no escape codes, no wrapping).

    with Phases(console) as phase:
        phase("exporting resnet_acmix50 at 224x224")     # a new phase: one line when piped
        phase.note("graph passes applied: 606 -> 586 nodes")   # a result line, printed either way
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from types import TracebackType

from rich.console import Console


class Phases:
    """Callable: `phase(text)` starts a phase; `note(text)` prints a line without starting one."""

    def __init__(self, console: Console | None = None, prefix: str = "") -> None:
        self.console = console or Console(stderr=True, soft_wrap=True)
        self.prefix = prefix
        self._progress = None
        self._task = None
        self._start = time.perf_counter()

    @property
    def live(self) -> bool:
        return self.console.is_terminal and not self.console.is_dumb_terminal

    def __enter__(self) -> Phases:
        if self.live:
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                console=self.console, transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.prefix or "working", total=None)
        return self

    def __call__(self, text: str) -> None:
        """A new phase: the spinner's text on a terminal, one line otherwise (and on a terminal too,
        so the phases stay visible after the spinner is gone)."""
        self._print(text)
        if self._progress is not None:
            self._progress.update(self._task, description=f"{self.prefix}{text}")

    def note(self, text: str) -> None:
        self._print(text)

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Stop the spinner while another live display (TensorRT's build bars) draws, then resume."""
        if self._progress is None:
            yield
            return
        self._progress.stop()
        try:
            yield
        finally:
            self._progress.start()

    def _print(self, text: str) -> None:
        self.console.print(text, highlight=False, markup=False, soft_wrap=True)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self._start
