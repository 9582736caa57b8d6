"""How a run of many tasks goes, shown while it runs: done, failed, rate, ETA.

``run_tasks`` and ``as_completed`` (and ``FunctionSession.map`` and its
kin, and the blocking API's) take ``progress=``: ``True``, a description,
or a :class:`Progress` saying where the counts go (a rich display drawn on
stderr, one of the caller's own, or a callback). :func:`resolve` turns that
option into a :class:`Progress`, and :class:`ProgressTracker` runs it for
one fan-out.

Nothing here runs when the option is off: the fan-out then holds no tracker
and counts nothing. Drawing is rich's, imported only when a display is
asked for (``_progress_display``); importing :mod:`flame` does not import
rich. No thread is started: rich's own refresh thread is turned off, and the
display is redrawn from the event loop by a task of the fan-out's own group,
so it ends with the call, cancelled or not.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sized
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import attrs

from ._informer import inform
from ._types import _invalid

if TYPE_CHECKING:
    import rich.console
    import rich.progress

__all__ = [
    "DEFAULT_PROGRESS_INTERVAL",
    "Progress",
    "ProgressOption",
    "ProgressTracker",
    "TaskCounts",
    "resolve",
]

DEFAULT_PROGRESS_INTERVAL = 0.1
"""Seconds between two redraws of a progress display (or calls of its callback)."""


@attrs.frozen
class TaskCounts:
    """How far a run of many tasks has gone: what a :class:`Progress` callback is given."""

    done: int
    """Inputs finished, in any way: their tasks ended, or their calls failed."""
    failed: int
    """Of those ``done``, the ones that failed (a ``FAILED`` task, a refused or lost call)."""
    total: int | None
    """How many inputs there are; None while unknown (an iterator not yet exhausted)."""
    elapsed: float
    """Seconds since the run started."""
    final: bool = False
    """True for the last counts of the run, given once when it ends (however it ends)."""

    @property
    def succeeded(self) -> int:
        """Inputs whose tasks ended ``SUCCEED``."""
        return self.done - self.failed

    @property
    def rate(self) -> float:
        """Inputs done per second, on average since the start (0.0 at the very start)."""
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def remaining(self) -> float | None:
        """Seconds left at the average rate so far; None while the total or a rate is unknown."""
        if self.total is None or self.done == 0:
            return None
        return max(self.total - self.done, 0) / self.rate


def _check_description(_: object, __: object, value: Any) -> None:
    if value is not None and not isinstance(value, str):
        raise _invalid(f"Progress description must be a str, not {type(value).__name__}")


def _check_total(_: object, __: object, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _invalid(f"Progress total must be a number of inputs (0 or more), not {value!r}")


def _check_interval(_: object, __: object, value: Any) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise _invalid(f"Progress interval must be a number of seconds above 0, not {value!r}")


@attrs.frozen
class Progress:
    """Where the progress of ``run_tasks`` or ``as_completed`` is shown, and how.

    Pass one as ``progress=`` (``progress=True`` is ``Progress()``, and
    ``progress="pricing"`` is ``Progress("pricing")``)::

        tasks = await session.run_tasks(inputs, progress=flame.Progress("pricing"))

    By default a rich display on stderr shows the inputs done (and of how
    many), those failed, the rate and the time left, and only when stderr
    is a terminal (rich's judgement, so ``TTY_INTERACTIVE=0`` turns it off
    and ``FORCE_COLOR`` on); elsewhere nothing is drawn and nothing counted.
    At most one of ``console``, ``display`` and ``callback`` says where the
    counts go instead:

    * ``console``: a ``rich.console.Console`` to draw on (when it is a
      terminal), in place of stderr;
    * ``display``: a ``rich.progress.Progress`` of your own; the run adds
      one task (a row) to it and updates it, and leaves it there, stopped,
      at the end. Starting and stopping the display is yours, so several
      runs can share one, each a row (make it with ``auto_refresh=False``
      to keep rich's refresh thread off: the run redraws it while it is
      started);
    * ``callback``: a function (plain or ``async``) given the
      :class:`TaskCounts` at most every ``interval`` seconds when they have
      changed, and once more, ``final``, when the run ends. It runs in the
      caller's task (the calling thread, in :mod:`flame.sync`); an
      exception it raises stops the run and propagates, as an informer's
      does.

    The total is the number of inputs when they have a length (a list, a
    ``range``); give ``total`` when they do not but you know it (a
    generator). Otherwise the rate shows, and the total and time left once
    the inputs run out.
    """

    description: str | None = attrs.field(default=None, validator=_check_description)
    """The label of the run; None: "tasks" (a function session: the function's name)."""
    total: int | None = attrs.field(default=None, kw_only=True, validator=_check_total)
    """How many inputs there are; None: their length, if they have one."""
    console: rich.console.Console | None = attrs.field(default=None, kw_only=True)
    """Where to draw, in place of stderr: drawn only when it is a terminal."""
    display: rich.progress.Progress | None = attrs.field(default=None, kw_only=True)
    """A rich Progress of the caller's own, given one row for the run."""
    callback: Callable[[TaskCounts], Any] | None = attrs.field(default=None, kw_only=True)
    """Given the counts instead of drawing them."""
    interval: float = attrs.field(
        default=DEFAULT_PROGRESS_INTERVAL, kw_only=True, validator=_check_interval
    )
    """Seconds between two redraws (or callback calls)."""

    def __attrs_post_init__(self) -> None:
        given = [
            name for name in ("console", "display", "callback") if getattr(self, name) is not None
        ]
        if len(given) > 1:
            raise _invalid(
                f"Progress takes one of console, display and callback, not {' and '.join(given)}"
            )
        if self.callback is not None and not callable(self.callback):
            raise _invalid(
                f"Progress callback must be callable, not {type(self.callback).__name__}"
            )
        if self.display is not None and not callable(getattr(self.display, "add_task", None)):
            raise _invalid(
                f"Progress display must be a rich.progress.Progress, not "
                f"{type(self.display).__name__}"
            )
        if self.console is not None and not hasattr(self.console, "is_terminal"):
            raise _invalid(
                f"Progress console must be a rich.console.Console, not "
                f"{type(self.console).__name__}"
            )


ProgressOption = bool | str | Progress | None
"""What ``progress=`` takes: None or False (off), True, a description, a :class:`Progress`."""


def resolve(option: object, inputs: object = None) -> Progress | None:
    """``option`` as a :class:`Progress` (None when off), its total taken from ``inputs``.

    The total is filled in from ``len(inputs)`` when the option has none and
    the inputs have a length; FlameError ``INVALID_ARGUMENT`` if ``option``
    is not a progress option.
    """
    if option is None or option is False:
        return None
    if option is True:
        progress = Progress()
    elif isinstance(option, str):
        progress = Progress(option)
    elif isinstance(option, Progress):
        progress = option
    else:
        raise _invalid(
            "progress must be True, a description (str) or a flame.Progress (None or False: "
            f"no progress), not {type(option).__name__}"
        )
    if progress.total is None and isinstance(inputs, Sized):
        progress = attrs.evolve(progress, total=len(inputs))
    return progress


class _Sink(Protocol):
    """Where a tracker's counts go: a rich display, or a callback."""

    def open(self, total: int | None) -> None: ...

    async def report(self, counts: TaskCounts) -> None: ...

    def close(self, counts: TaskCounts) -> None: ...


class _CallbackSink:
    def __init__(self, callback: Callable[[TaskCounts], Any]) -> None:
        self._callback = callback
        self._last: tuple[int, int, int | None] | None = None

    def open(self, total: int | None) -> None:
        pass

    async def report(self, counts: TaskCounts) -> None:
        seen = (counts.done, counts.failed, counts.total)
        if seen == self._last and not counts.final:
            return
        self._last = seen
        await inform(self._callback, counts)

    def close(self, counts: TaskCounts) -> None:
        pass


class ProgressTracker:
    """The counts of one fan-out, and where they are shown, for the length of its run.

    The fan-out calls :meth:`open` before its workers start, :meth:`finished`
    for each input done, :meth:`tick` in a task of its group (the
    periodic redraws, until :meth:`stop_ticking`), and :meth:`close` when it
    ends, however it ends. An exception raised by a callback is handed to
    ``stop``, which ends the run with it.
    """

    __slots__ = (
        "_interval",
        "_scope",
        "_sink",
        "_started",
        "_stop",
        "done",
        "failed",
        "total",
    )

    def __init__(
        self, sink: _Sink, total: int | None, interval: float, stop: Callable[[BaseException], None]
    ) -> None:
        self._sink = sink
        self._interval = interval
        self._stop = stop
        self._scope = anyio.CancelScope()
        self._started = time.monotonic()
        self.done = 0
        self.failed = 0
        self.total = total

    @classmethod
    def create(
        cls, progress: Progress | None, description: str, stop: Callable[[BaseException], None]
    ) -> ProgressTracker | None:
        """The tracker of ``progress`` (from :func:`resolve`); None when nothing is to be shown.

        Whether there is a terminal to draw on is judged here (rich is
        imported for it): with none, there is no tracker at all. Nothing is
        drawn before :meth:`open`.
        """
        if progress is None:
            return None
        label = progress.description if progress.description is not None else description
        sink: _Sink
        if progress.callback is not None:
            sink = _CallbackSink(progress.callback)
        else:
            from ._progress_display import RichSink

            shown = RichSink.create(label, progress.console, progress.display)
            if shown is None:
                return None
            sink = shown
        return cls(sink, progress.total, progress.interval, stop)

    def open(self) -> None:
        """The run starts: the clock, and the display's first frame."""
        self._started = time.monotonic()
        self._sink.open(self.total)

    def finished(self, ok: bool) -> None:
        """One more input is done (``ok``: its task ended ``SUCCEED``)."""
        self.done += 1
        if not ok:
            self.failed += 1

    def inputs_ended(self, count: int) -> None:
        """The inputs ran out after ``count``: the total, if it was not known."""
        if self.total is None:
            self.total = count

    def counts(self, final: bool = False) -> TaskCounts:
        elapsed = time.monotonic() - self._started
        return TaskCounts(self.done, self.failed, self.total, elapsed, final)

    async def tick(self) -> None:
        """Report the counts every ``interval`` seconds until :meth:`stop_ticking`."""
        with self._scope:
            while True:
                await anyio.sleep(self._interval)
                try:
                    await self._sink.report(self.counts())
                except Exception as exc:
                    self._stop(exc)
                    return

    def stop_ticking(self) -> None:
        self._scope.cancel()

    async def close(self) -> None:
        """Report the final counts, even when cancelled, and close the display."""
        counts = self.counts(final=True)
        try:
            # Shielded: a cancelled run still shows (and tells) where it stopped.
            with anyio.CancelScope(shield=True):
                await self._sink.report(counts)
        except Exception as exc:
            self._stop(exc)
        finally:
            self._sink.close(counts)
