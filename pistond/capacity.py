"""Admission: job slots (a fixed pool of box slots, a bounded FIFO queue with a wait timeout)
and the stage gate (how many stages run at once, so that the CPUs are not oversubscribed).

``PISTON_MAX_CONCURRENT_JOBS`` keeps Piston's meaning: jobs admitted, each holding a box slot.
The stage gate is pistond's own: an admitted job's stage starts only when fewer than
``max_running_stages`` stages are running, in FIFO order, within what is left of the job's
queue timeout. A stage that has gone idle (waiting for input, sleeping) gives its place back,
so that interactive sessions never hold the CPUs' places.
"""

from __future__ import annotations

import math
import os
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final

import attrs
import trio

from pistond.errors import Overloaded

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


STAGES_PER_CPU: Final = 4
"""Default stages running at once per CPU: enough to overlap each stage's short waits (its
spawn, its pipes) without oversubscribing the CPUs (``bench/execute.py`` shows the curve)."""


def default_stage_limit() -> int:
    """The stage gate's size when not configured: ``STAGES_PER_CPU`` per usable CPU."""
    cpus = len(os.sched_getaffinity(0)) or os.cpu_count() or 1
    return STAGES_PER_CPU * cpus


@attrs.frozen
class CapacityStatistics:
    """A snapshot of the slot pool."""

    slots: int
    """Configured number of slots (PISTON_MAX_CONCURRENT_JOBS)."""
    running: int
    """Jobs holding a slot and not waiting at the stage gate (a finishing job included)."""
    queued: int
    """Jobs waiting for a slot or for a stage to start."""
    stages: int
    """Stages holding a place at the stage gate."""
    stage_limit: int
    """How many stages may run at once."""


@attrs.define(eq=False)
class StageTicket:
    """A stage's place at the stage gate; given back once, when the stage ends or goes idle."""

    _gate: StageGate
    _held: bool = True

    def release(self) -> None:
        """Give the place back; idempotent."""
        if self._held:
            self._held = False
            self._gate.release_one()


@attrs.define(eq=False)
class StageGate:
    """At most ``limit`` stages running at once; the others wait, first come first served."""

    limit: int
    _semaphore: trio.Semaphore = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._semaphore = trio.Semaphore(self.limit)

    async def admit(self, *, deadline: float) -> StageTicket:
        """Wait (FIFO) for a place until ``deadline`` (trio clock).

        Raises:
            Overloaded: no place became free in time.
        """
        with trio.move_on_at(deadline) as scope:
            await self._semaphore.acquire()
        if scope.cancelled_caught:
            raise Overloaded("no stage could start within the queue timeout")
        return StageTicket(self)

    def release_one(self) -> None:
        """A place is free again (:meth:`StageTicket.release`)."""
        self._semaphore.release()

    @property
    def waiting(self) -> int:
        """Stages waiting for a place."""
        return self._semaphore.statistics().tasks_waiting

    @property
    def running(self) -> int:
        """Places taken."""
        return self.limit - self._semaphore.value


@attrs.define(eq=False)
class Capacity:
    """Hands out box slots 0..slots-1; a slot returns to the pool only when its holder is done.

    Args:
        slots: how many jobs may run at once.
        max_queue: how many jobs may wait; one more gets ``overloaded`` at once.
        queue_timeout: seconds a job may wait before it gets ``overloaded``.
        stage_limit: how many stages may run at once (the stage gate).
    """

    slots: int
    max_queue: int
    queue_timeout: float
    stage_limit: int = 0
    """0: as many as there are slots (no gate)."""
    stages: StageGate = attrs.field(init=False)
    _free: list[int] = attrs.field(init=False)
    _semaphore: trio.Semaphore = attrs.field(init=False)
    _retired: set[int] = attrs.field(init=False, factory=set)

    def __attrs_post_init__(self) -> None:
        self._free = list(range(self.slots))
        self._semaphore = trio.Semaphore(self.slots)
        self.stages = StageGate(self.stage_limit or self.slots)

    def deadline(self) -> float:
        """The trio time until which a job arriving now may wait (its queue timeout)."""
        if self.queue_timeout <= 0:
            return math.inf
        return trio.current_time() + self.queue_timeout

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
        at_gate = self.stages.waiting
        return CapacityStatistics(
            slots=self.slots,
            running=self.slots - self._semaphore.value - at_gate,
            queued=self.queued + at_gate,
            stages=self.stages.running,
            stage_limit=self.stages.limit,
        )
