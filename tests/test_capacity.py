"""Job slots: a fixed pool, a bounded FIFO queue and a wait timeout."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from pistond.capacity import Capacity
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
