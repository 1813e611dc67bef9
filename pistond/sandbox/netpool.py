"""Network namespaces reused per box slot: loopback only, proven clean before each reuse.

Making a network namespace is the slowest kernel step of a sandbox (about a millisecond here,
and more to tear one down), so each box slot keeps one: the launcher makes it (loopback up),
every stage of that slot enters it, and after each stage the sandbox's PID 1 checks, once
every process of the sandbox is gone, that it is still pristine (no packet ever crossed an
interface, no socket left; see ``launcher/netns.c``). A namespace that is not, or whose check
did not arrive, is dropped, and the slot's next stage gets a new one.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import attrs
import trio

from pistond.errors import SandboxError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)


@attrs.define(eq=False)
class NetworkPool:
    """One reusable network namespace per box slot, lent to one stage at a time.

    Args:
        make: makes a new namespace (``Launcher.network_namespace``).
    """

    make: Callable[[], Awaitable[int]]
    _slots: dict[int, int] = attrs.field(factory=dict)
    _lent: set[int] = attrs.field(factory=set)
    _locks: dict[int, trio.Lock] = attrs.field(factory=dict)
    made: int = 0
    """Namespaces made so far."""
    replaced: int = 0
    """Namespaces dropped because a stage left them unclean."""

    async def acquire(self, slot: int) -> int:
        """Lend the slot's namespace (made if it has none) to one stage until :meth:`release`.

        Raises:
            SandboxError: the namespace is lent already (two live sandboxes must never share
                one), or none could be made.
        """
        if slot in self._lent:
            raise SandboxError(f"box {slot}: its network namespace is in use")
        self._lent.add(slot)
        try:
            fd = self._slots.get(slot)
            if fd is None:
                lock = self._locks.setdefault(slot, trio.Lock())
                async with lock:
                    fd = self._slots.get(slot)
                    if fd is None:
                        fd = self._slots[slot] = await self.make()
                        self.made += 1
        except BaseException:
            self._lent.discard(slot)
            raise
        return fd

    def release(self, slot: int, fd: int, clean: bool) -> None:
        """The stage of ``slot`` that used namespace ``fd`` ended; keep it only if ``clean``."""
        self._lent.discard(slot)
        if clean or self._slots.get(slot) != fd:
            return
        del self._slots[slot]
        os.close(fd)
        self.replaced += 1
        logger.debug("box %d: network namespace used; it will be replaced", slot)

    def close(self) -> None:
        """Drop every namespace."""
        for fd in self._slots.values():
            os.close(fd)
        self._slots.clear()
