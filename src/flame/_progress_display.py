"""The rich display of a run's progress: one row of done/total, failed, rate, elapsed and ETA.

Imported only when a display is asked for (``progress=True`` and its kin),
so that importing :mod:`flame` does not import rich. The display is a
``rich.progress.Progress`` made with ``auto_refresh=False``: rich's refresh
thread would outlive a cancelled run under trio or asyncio unless stopped
from a ``finally``, and would draw from another thread than the run's;
instead :class:`~flame._progress.ProgressTracker` redraws it from the event
loop. It does not redirect ``sys.stdout`` and ``sys.stderr`` either (rich's
default): those are the whole process's, and two runs drawing at once
would restore them out of order.
"""

from __future__ import annotations

import datetime

import rich.console
import rich.progress
from rich.text import Text

from ._progress import TaskCounts

__all__ = ["RichSink"]


class _Done(rich.progress.ProgressColumn):
    """Inputs done, of how many: ``1,234/10,000`` (``1,234/?`` while the total is unknown)."""

    def render(self, task: rich.progress.Task) -> Text:
        total = "?" if task.total is None else f"{int(task.total):,}"
        return Text(f"{int(task.completed):,}/{total}", style="progress.download")


class _Failed(rich.progress.ProgressColumn):
    """Inputs failed: red once there is one."""

    def render(self, task: rich.progress.Task) -> Text:
        failed = int(task.fields.get("failed", 0))
        return Text(f"{failed:,} failed", style="bold red" if failed else "dim")


class _Rate(rich.progress.ProgressColumn):
    """Inputs done per second, over rich's recent window (the whole run once it is done)."""

    def render(self, task: rich.progress.Task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None:
            return Text("-/s", style="progress.data.speed")
        shown = f"{speed:,.1f}" if speed < 10 else f"{speed:,.0f}"
        return Text(f"{shown}/s", style="progress.data.speed")


class _Remaining(rich.progress.ProgressColumn):
    """Time left at the recent rate; none while the total or a rate is unknown."""

    def render(self, task: rich.progress.Task) -> Text:
        if task.finished:
            return Text("")
        remaining = task.time_remaining
        if remaining is None:
            return Text("ETA -:--:--", style="progress.remaining")
        shown = datetime.timedelta(seconds=int(remaining))
        return Text(f"ETA {shown}", style="progress.remaining")


def _columns() -> tuple[rich.progress.ProgressColumn, ...]:
    return (
        rich.progress.TextColumn("[progress.description]{task.description}"),
        rich.progress.BarColumn(),
        _Done(),
        _Failed(),
        _Rate(),
        rich.progress.TimeElapsedColumn(),
        _Remaining(),
    )


class RichSink:
    """One row of a rich Progress, for one run: its own display, or the caller's.

    Its own (``owned``) is started when the run opens and stopped when it
    closes; the caller's is only given a row, updated, and the row stopped.
    Either is redrawn on each report while it is started.
    """

    def __init__(self, display: rich.progress.Progress, owned: bool, label: str) -> None:
        self._display = display
        self._owned = owned
        self._label = label
        self._row: rich.progress.TaskID | None = None

    @classmethod
    def create(
        cls,
        label: str,
        console: rich.console.Console | None,
        display: rich.progress.Progress | None,
    ) -> RichSink | None:
        """The sink for a run; None if its console is not a terminal to draw on."""
        if display is not None:
            return cls(display, False, label)
        if console is None:
            console = rich.console.Console(stderr=True)
        # A live display only where rich would animate one: a terminal, not a
        # dumb one, unless TTY_INTERACTIVE says otherwise.
        if not console.is_interactive:
            return None
        own = rich.progress.Progress(
            *_columns(),
            console=console,
            auto_refresh=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        return cls(own, True, label)

    def open(self, total: int | None) -> None:
        if self._owned:
            self._display.start()
        self._row = self._display.add_task(self._label, total=total, failed=0)
        self._redraw()

    async def report(self, counts: TaskCounts) -> None:
        self._update(counts)
        self._redraw()

    def close(self, counts: TaskCounts) -> None:
        if self._row is None:
            return
        self._update(counts)
        self._display.stop_task(self._row)
        if self._owned:
            # Draws the last frame, ends its line and shows the cursor again.
            self._display.stop()
        else:
            self._redraw()

    def _update(self, counts: TaskCounts) -> None:
        assert self._row is not None
        self._display.update(
            self._row, completed=counts.done, total=counts.total, failed=counts.failed
        )

    def _redraw(self) -> None:
        if self._display.live.is_started:
            self._display.refresh()
