"""Job slots (a fixed pool, a bounded FIFO queue and a wait timeout) and the stage gate."""

from __future__ import annotations

import os

import pytest
import trio
import trio.testing

from pistond.capacity import STAGES_PER_CPU, Capacity, default_stage_limit
from pistond.errors import Overloaded


async def test_capacity_hands_out_distinct_slots() -> None:
    """Slots held at once are distinct and within range; a released slot is reused."""
    capacity = Capacity(slots=3, max_queue=0, queue_timeout=1)
    async with capacity.slot() as a, capacity.slot() as b, capacity.slot() as c:
        assert sorted([a, b, c]) == [0, 1, 2]
        assert capacity.statistics().running == 3
    assert capacity.statistics().running == 0
    async with capacity.slot() as again:
        assert again == 0


async def _hold(capacity: Capacity, release: trio.Event, order: list[int], number: int) -> None:
    async with capacity.slot():
        order.append(number)
        await release.wait()


async def test_capacity_queue_full_is_overloaded() -> None:
    """With every slot busy and the queue full, a new job is refused at once."""
    capacity = Capacity(slots=1, max_queue=1, queue_timeout=60)
    release, order = trio.Event(), []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_hold, capacity, release, order, 0)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(_hold, capacity, release, order, 1)
        await trio.testing.wait_all_tasks_blocked()
        assert capacity.statistics().queued == 1
        with pytest.raises(Overloaded, match=r"job queue is full \(1 jobs waiting\)"):
            async with capacity.slot():
                pass
        release.set()
    assert order == [0, 1]


async def test_capacity_queue_timeout_is_overloaded(autojump_clock: trio.abc.Clock) -> None:
    """A job that waits longer than the queue timeout gets overloaded."""
    capacity = Capacity(slots=1, max_queue=5, queue_timeout=2.5)
    async with capacity.slot():
        start = trio.current_time()
        with pytest.raises(Overloaded, match=r"no job slot became free within 2.5 s"):
            async with capacity.slot():
                pass
        assert trio.current_time() - start == pytest.approx(2.5)


async def test_capacity_queue_is_fifo() -> None:
    """Waiting jobs get slots in the order they asked."""
    capacity = Capacity(slots=1, max_queue=10, queue_timeout=60)
    release, order = trio.Event(), []
    async with trio.open_nursery() as nursery:
        for number in range(5):
            nursery.start_soon(_hold, capacity, release, order, number)
            await trio.testing.wait_all_tasks_blocked()
        assert capacity.statistics().queued == 4
        release.set()
    assert order == [0, 1, 2, 3, 4]


async def test_capacity_slot_returns_after_error() -> None:
    """A job that fails still gives its slot back."""
    capacity = Capacity(slots=1, max_queue=0, queue_timeout=1)
    with pytest.raises(RuntimeError):
        async with capacity.slot():
            raise RuntimeError("boom")
    assert capacity.statistics().running == 0


async def test_capacity_retired_slot_is_never_reused() -> None:
    """A retired slot does not return to the pool; the others still serve."""
    capacity = Capacity(slots=2, max_queue=0, queue_timeout=1)
    async with capacity.slot() as first:
        capacity.retire(first)
    assert capacity.statistics().running == 1
    async with capacity.slot() as second:
        assert second != first
    with pytest.raises(Overloaded):
        async with capacity.slot(), capacity.slot():
            pass


async def test_stage_gate_admits_up_to_its_limit_in_arrival_order() -> None:
    """The gate lets ``limit`` stages run; the others start in the order they came."""
    capacity = Capacity(slots=8, max_queue=8, queue_timeout=60, stage_limit=2)
    started: list[int] = []
    tickets: dict[int, object] = {}

    async def stage(number: int) -> None:
        ticket = await capacity.stages.admit(deadline=capacity.deadline())
        started.append(number)
        tickets[number] = ticket

    async with trio.open_nursery() as nursery:
        for number in range(5):
            nursery.start_soon(stage, number)
            await trio.testing.wait_all_tasks_blocked()
        assert started == [0, 1]
        stats = capacity.statistics()
        assert (stats.stages, stats.stage_limit, stats.queued) == (2, 2, 3)
        tickets[1].release()  # type: ignore[attr-defined]
        tickets[1].release()  # type: ignore[attr-defined]  # idempotent: one place only
        await trio.testing.wait_all_tasks_blocked()
        assert started == [0, 1, 2]
        for number, expected in ((0, [0, 1, 2, 3]), (2, [0, 1, 2, 3, 4])):
            tickets[number].release()  # type: ignore[attr-defined]
            await trio.testing.wait_all_tasks_blocked()
            assert started == expected
        for number in (3, 4):
            tickets[number].release()  # type: ignore[attr-defined]
    assert capacity.statistics().stages == 0


async def test_stage_gate_wait_ends_at_the_job_deadline(autojump_clock: object) -> None:
    """A stage that cannot start before its job's queue deadline is refused as overloaded."""
    capacity = Capacity(slots=2, max_queue=2, queue_timeout=5, stage_limit=1)
    held = await capacity.stages.admit(deadline=capacity.deadline())
    deadline = capacity.deadline()
    with pytest.raises(Overloaded, match="no stage could start within the queue timeout"):
        await capacity.stages.admit(deadline=deadline)
    assert trio.current_time() == pytest.approx(deadline)
    held.release()


def test_default_stage_limit_follows_the_cpus() -> None:
    """Without a setting the gate holds STAGES_PER_CPU stages per usable CPU."""
    assert default_stage_limit() == STAGES_PER_CPU * len(os.sched_getaffinity(0))
