"""Who gets the executors: fair share in proportion to pending work.

This module is pure bookkeeping, with no I/O and no clock, so that its rules
can be tested one decision at a time. The executor pool asks :func:`plan` what
to do whenever demand changes in a way that may move executors, and carries
the answer out.

The rules:

* the cluster has ``capacity`` slots; an executor of a session takes the
  session's ``slots`` of them;
* a session's *work* is its pending plus running tasks; more executors than
  that are useless to it, and it gets no more than its ``limit`` (its
  ``max_instances``) if it has one;
* every session with work first gets one executor if one fits (oldest session
  first), so that a small session never starves behind a large one;
* then executors go one at a time to the session holding the fewest slots per
  unit of work, so that shares end up in proportion to pending work;
* an executor moves only between tasks: one whose session is above its share
  is released after its current task, and only when some other session is
  below its share and the free slots cannot make up for it. An idle executor
  stays bound to its session (new tasks there start at once) until another
  session needs its slots.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

__all__ = ["Demand", "Plan", "fair_shares", "plan"]


@attrs.frozen
class Demand:
    """What one session wants and holds at the moment of a decision."""

    session: int
    """The session's number: smaller is older."""
    slots: int
    """Slots each of its executors takes."""
    work: int
    """Pending plus running tasks."""
    bound: int
    """Executors bound to it now."""
    limit: int | None = None
    """The most executors it may hold, if it has a limit."""


@attrs.frozen
class Plan:
    """What to do: start executors for some sessions, release some of others."""

    start: tuple[tuple[int, int], ...] = ()
    """``(session, how many executors to start)``, within the free slots."""
    release: tuple[tuple[int, int], ...] = ()
    """``(session, how many executors to release)``."""


def fair_shares(capacity: int, demands: Sequence[Demand]) -> dict[int, int]:
    """How many executors each session should hold, for ``capacity`` slots.

    Deterministic: ties go to the older (smaller) session.
    """
    shares = {d.session: 0 for d in demands}
    wanting = sorted((d for d in demands if d.work > 0), key=lambda d: d.session)
    left = capacity
    while True:
        best: Demand | None = None
        best_ratio = 0.0
        for d in wanting:
            held = shares[d.session]
            if held >= d.work or d.slots > left or (d.limit is not None and held >= d.limit):
                continue
            ratio = held * d.slots / d.work
            if best is None or ratio < best_ratio:
                best, best_ratio = d, ratio
        if best is None:
            return shares
        shares[best.session] += 1
        left -= best.slots


def plan(capacity: int, demands: Sequence[Demand]) -> Plan:
    """Turn fair shares into executors to start now and executors to release."""
    shares = fair_shares(capacity, demands)
    free = capacity - sum(d.bound * d.slots for d in demands)
    under = sorted(
        (d for d in demands if d.bound < shares[d.session]),
        key=lambda d: (d.bound * d.slots / max(d.work, 1), d.session),
    )
    start: list[tuple[int, int]] = []
    short = False
    for d in under:
        wanted = shares[d.session] - d.bound
        fits = min(wanted, max(free, 0) // d.slots)
        if fits:
            start.append((d.session, fits))
            free -= fits * d.slots
        if fits < wanted:
            short = True
    release: list[tuple[int, int]] = []
    if short:
        release = [
            (d.session, d.bound - shares[d.session])
            for d in sorted(demands, key=lambda d: d.session)
            if d.bound > shares[d.session]
        ]
    return Plan(start=tuple(start), release=tuple(release))
