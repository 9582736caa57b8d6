"""The calling thread's side of a blocking call: it waits, and runs the user's code.

A blocking call hands its work to the portal (:mod:`flame.sync._portal`)
and waits on a :class:`Caller`: a queue where the portal puts what it has
for the calling thread. Two kinds of thing arrive there:

* answers of the work the thread waits for (a result, an error, one item of
  an iterator);
* requests to run the user's own code: the next item of an iterable of
  inputs, a method of an informer, a progress callback.

User code given to a blocking call runs in the thread that made the call,
never on the portal's event loop: a slow generator does not stall the loop
(and every other call on the connection), objects bound to their thread (a
sqlite3 connection, say) keep working, and a KeyboardInterrupt it raises is
raised where Ctrl-C raises it: in the calling thread. It runs only while
that thread is inside a blocking call that serves its caller (the ``next``
of an ``as_completed`` iterator, say), which is when the async API would
run it too: between two steps of the caller's own code.

A KeyboardInterrupt, or any other BaseException that is not an Exception,
raised while the thread waits or by the user code it runs, cancels the work
on the portal; the thread goes on waiting until the work has ended (its
tasks cancelled, its streams closed), refusing further requests, and then
raises it. A second one while it waits for that is raised at once.
"""

from __future__ import annotations

import inspect
import queue
import threading
from collections.abc import AsyncIterable, Callable, Iterable, Iterator
from typing import Any, TypeVar

import anyio
import attrs

from .. import FlameError, Progress, Task, TaskCounts, TaskInformer
from .._progress import resolve
from ._portal import Answer, Interrupted, Job, Outcome, Portal

__all__ = ["Caller"]

T = TypeVar("T")

# Where a request is: waiting in the queue, being run, answered, or given up
# by the portal's side (cancelled before the calling thread took it).
_WAITING, _RUNNING, _DONE, _WITHDRAWN = range(4)

_END = object()

# Inputs read by the async code itself: no user code runs while they are iterated.
_PLAIN_INPUTS = (list, tuple)


class _Request:
    """User code the portal asks the calling thread to run."""

    __slots__ = ("args", "done", "fn", "outcome", "state")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        self.done = anyio.Event()  # made on the loop: the portal's side waits on it
        self.state = _WAITING
        self.outcome: Outcome[Any] | None = None


class Caller:
    """The queue one calling thread waits on, for one blocking call or iterator.

    Made in the calling thread; the portal's side uses :meth:`answer` and
    :meth:`run_here`, the calling thread :meth:`wait`.
    """

    def __init__(self, portal: Portal) -> None:
        self._portal = portal
        self._queue: queue.SimpleQueue[Answer | _Request] = queue.SimpleQueue()
        self._lock = threading.Lock()

    # -- the portal's side ---------------------------------------------------

    def answer(self, answer: Answer) -> None:
        """Give the calling thread an answer (from any thread)."""
        self._queue.put(answer)

    async def run_here(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in the calling thread and return its result (on the loop).

        Its Exception is raised here as it is; an interruption of the calling
        thread is raised as :class:`~flame.sync._portal.Interrupted`.
        Cancelled before the calling thread took it, it never runs; once
        taken, it is waited for.
        """
        request = _Request(fn, args)
        self._queue.put(request)
        try:
            await request.done.wait()
        except BaseException:
            with self._lock:
                withdrawn = request.state == _WAITING
                if withdrawn:
                    request.state = _WITHDRAWN
            if not withdrawn:
                # The calling thread is running it: what it reads is not lost
                # half-way, and the thread is not left answering nobody.
                with anyio.CancelScope(shield=True):
                    await request.done.wait()
            raise
        outcome: Outcome[T] | None = request.outcome
        assert outcome is not None
        if outcome.error is not None:
            raise outcome.error
        return outcome.value  # type: ignore[return-value]  # set, with no error

    # -- the calling thread --------------------------------------------------

    def wait(self, job: Job, interrupted: BaseException | None = None) -> Answer:
        """Wait for the next answer of ``job``, running what the portal asks meanwhile.

        On a KeyboardInterrupt (or SystemExit), here or in the user code,
        ``job`` is cancelled, and this returns only by raising it, once the
        job has ended. Given ``interrupted``, that is what it does at once.
        """
        request: _Request | None = None
        if interrupted is not None:
            job.cancel()
        while True:
            try:
                item = self._queue.get()
                if isinstance(item, _Request):
                    request = item
                    if interrupted is None:
                        self._run(item)
                    else:
                        self._settle(item, Outcome(error=Interrupted(interrupted)))
                    request = None
                    continue
            except BaseException as exc:
                if request is not None:
                    self._settle(request, Outcome(error=Interrupted(exc)))
                    request = None
                if interrupted is not None:
                    raise
                interrupted = exc
                job.cancel()
                continue
            if item.job is not job:
                continue  # left over from work this thread stopped waiting for
            if interrupted is None:
                return item
            if item.final:
                raise interrupted

    def _run(self, request: _Request) -> None:
        with self._lock:
            if request.state != _WAITING:
                return
            request.state = _RUNNING
        try:
            value = request.fn(*request.args)
        except Exception as exc:
            # The user code's own error: the async code deals with it as it is.
            self._settle(request, Outcome(error=exc))
        except BaseException as exc:
            self._settle(request, Outcome(error=Interrupted(exc)))
            raise
        else:
            self._settle(request, Outcome(value))

    def _settle(self, request: _Request, outcome: Outcome[Any]) -> None:
        with self._lock:
            if request.state in (_DONE, _WITHDRAWN):
                return
            request.state = _DONE
            request.outcome = outcome
        self._portal.soon(request.done.set)

    # -- user code, wrapped to run here ----------------------------------------

    def inputs(self, inputs: Any) -> Any:
        """``inputs`` for the async API, read in the calling thread when they are user code.

        A list or tuple is passed as it is (reading it runs no user code), and
        so is anything the async API refuses or iterates on the loop itself
        (bytes, an async iterable). Any other iterable is iterated here, one
        item when the async code asks for one: as lazily as the async API
        reads it.
        """
        if isinstance(inputs, _PLAIN_INPUTS) or not isinstance(inputs, Iterable):
            return inputs
        if isinstance(inputs, (bytes, bytearray, memoryview, str, AsyncIterable)):
            return inputs
        return _InputsHere(self, iter(inputs))

    def informer(self, informer: Any) -> Any:
        """``informer`` for the async API, its methods run in the calling thread.

        One that is not an informer is passed as it is, for the async API to
        refuse with its own message.
        """
        if informer is None or not all(
            callable(getattr(informer, name, None)) for name in ("on_update", "on_error")
        ):
            return informer
        return _InformerHere(self, informer)

    def progress(self, option: Any, inputs: Any) -> Progress | None:
        """``option`` for the async API: its total from ``inputs``, its callback run here.

        Resolved before the inputs are wrapped (:meth:`inputs`), which hides
        their length. A display is drawn by the portal's loop: no user code
        runs for it.
        """
        progress = resolve(option, inputs)
        if progress is None or progress.callback is None:
            return progress
        return attrs.evolve(progress, callback=_CallbackHere(self, progress.callback))


class _CallbackHere:
    """A progress callback run in the calling thread (an ``async`` one then on the loop)."""

    def __init__(self, caller: Caller, callback: Callable[[TaskCounts], Any]) -> None:
        self._caller = caller
        self._callback = callback

    async def __call__(self, counts: TaskCounts) -> None:
        result = await self._caller.run_here(self._callback, counts)
        if inspect.isawaitable(result):
            try:
                await result
            except (KeyboardInterrupt, SystemExit) as exc:
                raise Interrupted(exc) from None


class _InputsHere:
    """An async iterator over a plain iterator, each ``next`` run in the calling thread."""

    def __init__(self, caller: Caller, items: Iterator[Any]) -> None:
        self._caller = caller
        self._items = items

    def __aiter__(self) -> _InputsHere:
        return self

    async def __anext__(self) -> Any:
        # A sentinel, not StopIteration: that cannot leave a coroutine.
        item = await self._caller.run_here(next, self._items, _END)
        if item is _END:
            raise StopAsyncIteration
        return item


class _InformerHere(TaskInformer):
    """An informer whose methods run in the calling thread (``async`` ones then on the loop)."""

    def __init__(self, caller: Caller, informer: Any) -> None:
        self._caller = caller
        self._informer = informer

    async def on_update(self, task: Task) -> None:
        await self._inform(self._informer.on_update, task)

    async def on_error(self, error: FlameError) -> None:
        await self._inform(self._informer.on_error, error)

    async def _inform(self, method: Callable[[Any], Any], argument: Any) -> None:
        result = await self._caller.run_here(method, argument)
        if inspect.isawaitable(result):
            try:
                await result
            except (KeyboardInterrupt, SystemExit) as exc:
                # Not on the loop, which would die of it: in the calling thread.
                raise Interrupted(exc) from None
