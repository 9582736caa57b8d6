"""The fair-share rules of the scheduler, one decision at a time."""

from __future__ import annotations

from flame.local._scheduler import Demand, Plan, fair_shares, plan


def d(session: int, work: int, bound: int = 0, slots: int = 1, limit: int | None = None) -> Demand:
    return Demand(session=session, slots=slots, work=work, bound=bound, limit=limit)


def test_one_session_gets_what_it_can_use() -> None:
    assert fair_shares(4, [d(1, work=10)]) == {1: 4}
    assert fair_shares(4, [d(1, work=2)]) == {1: 2}
    assert fair_shares(4, [d(1, work=0)]) == {1: 0}


def test_shares_follow_pending_work() -> None:
    assert fair_shares(4, [d(1, work=30), d(2, work=10)]) == {1: 3, 2: 1}
    assert fair_shares(6, [d(1, work=10), d(2, work=10), d(3, work=10)]) == {1: 2, 2: 2, 3: 2}
    assert fair_shares(8, [d(1, work=100), d(2, work=300)]) == {1: 2, 2: 6}


def test_every_session_with_work_gets_one_executor_first() -> None:
    # However small its work, a session is not starved by a large one.
    assert fair_shares(2, [d(1, work=1000), d(2, work=1)]) == {1: 1, 2: 1}
    # Not enough slots for all: the older sessions first.
    assert fair_shares(2, [d(3, work=5), d(1, work=5), d(2, work=5)]) == {1: 1, 2: 1, 3: 0}


def test_slots_per_executor_count() -> None:
    # Session 1 takes 2 slots per executor.
    assert fair_shares(4, [d(1, work=10, slots=2), d(2, work=10)]) == {1: 1, 2: 2}
    assert fair_shares(3, [d(1, work=10, slots=2)]) == {1: 1}
    assert fair_shares(1, [d(1, work=10, slots=2)]) == {1: 0}


def test_no_more_executors_than_tasks() -> None:
    assert fair_shares(8, [d(1, work=1), d(2, work=2)]) == {1: 1, 2: 2}
    # Slots a small session cannot use go to the others, in proportion.
    assert fair_shares(8, [d(1, work=1), d(2, work=2), d(3, work=100)]) == {1: 1, 2: 1, 3: 6}


def test_plan_starts_executors_in_free_slots() -> None:
    assert plan(4, [d(1, work=10)]) == Plan(start=((1, 4),))
    assert plan(4, [d(1, work=10, bound=3)]) == Plan(start=((1, 1),))
    assert plan(4, [d(1, work=10, bound=4)]) == Plan()


def test_idle_executors_stay_bound_until_another_session_needs_them() -> None:
    # Session 1 has nothing to do but keeps its executors: nobody else wants them.
    assert plan(2, [d(1, work=0, bound=2)]) == Plan()
    # Session 2 needs them: session 1 releases both.
    assert plan(2, [d(1, work=0, bound=2), d(2, work=5)]) == Plan(release=((1, 2),))
    # When they have left, session 2 gets them.
    assert plan(2, [d(1, work=0, bound=0), d(2, work=5)]) == Plan(start=((2, 2),))


def test_a_busy_session_above_its_share_gives_executors_back() -> None:
    # Session 1 holds all four executors; session 2 arrives with as much work.
    decision = plan(4, [d(1, work=20, bound=4), d(2, work=20)])
    assert decision == Plan(release=((1, 2),))
    # Free slots first: nothing is released when they suffice.
    assert plan(4, [d(1, work=20, bound=2), d(2, work=20)]) == Plan(start=((2, 2),))


def test_plan_is_stable_once_shares_are_met() -> None:
    assert plan(4, [d(1, work=30, bound=3), d(2, work=10, bound=1)]) == Plan()


def test_the_most_underserved_session_starts_first() -> None:
    decision = plan(3, [d(1, work=10, bound=1), d(2, work=10)])
    assert decision.start[0][0] == 2
    assert sum(n for _, n in decision.start) == 2
