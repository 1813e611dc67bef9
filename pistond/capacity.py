"""Job slots: a fixed pool of box slots, a bounded FIFO queue with a wait timeout."""

from __future__ import annotations

import math
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import attrs
import trio

from pistond.errors import Overloaded

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


@attrs.frozen
class CapacityStatistics:
    """A snapshot of the slot pool."""

    slots: int
    """Configured number of slots (PISTON_MAX_CONCURRENT_JOBS)."""
    running: int
    """Slots in use, including those still being cleaned up."""
    queued: int
    """Jobs waiting for a slot."""


@attrs.define(eq=False)
class Capacity:
    """Hands out box slots 0..slots-1; a slot returns to the pool only when its holder is done.

    Args:
        slots: how many jobs may run at once.
        max_queue: how many jobs may wait; one more gets ``overloaded`` at once.
        queue_timeout: seconds a job may wait before it gets ``overloaded``.
    """

    slots: int
    max_queue: int
    queue_timeout: float
    _free: list[int] = attrs.field(init=False)
    _semaphore: trio.Semaphore = attrs.field(init=False)
    _retired: set[int] = attrs.field(init=False, factory=set)

    def __attrs_post_init__(self) -> None:
        self._free = list(range(self.slots))
        self._semaphore = trio.Semaphore(self.slots)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[int]:
        """Wait (FIFO) for a free slot and hold it for the body of the ``async with``.

        Raises:
            Overloaded: the queue is full, or the wait exceeded the queue timeout.
        """
        if self._semaphore.value == 0 and self.queued >= self.max_queue:
            raise Overloaded(f"job queue is full ({self.max_queue} jobs waiting)")
        timeout = self.queue_timeout if self.queue_timeout > 0 else math.inf
        with trio.move_on_after(timeout) as scope:
            await self._semaphore.acquire()
        if scope.cancelled_caught:
            raise Overloaded(f"no job slot became free within {self.queue_timeout:g} s")
        self._free.sort()
        slot = self._free.pop(0)
        try:
            yield slot
        finally:
            if slot not in self._retired:
                self._free.append(slot)
                self._semaphore.release()

    def retire(self, slot: int) -> None:
        """Never hand ``slot`` out again (its uid may still have processes); capacity shrinks."""
        self._retired.add(slot)

    @property
    def queued(self) -> int:
        """Jobs waiting for a slot."""
        return self._semaphore.statistics().tasks_waiting

    def statistics(self) -> CapacityStatistics:
        """Slots, running and queued counts."""
        return CapacityStatistics(
            slots=self.slots,
            running=self.slots - self._semaphore.value,
            queued=self.queued,
        )
