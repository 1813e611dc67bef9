"""Killing a group until it is empty, then removing it: the cleanup of leftover job groups."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final

from pistond.errors import SandboxError

if TYPE_CHECKING:
    from pistond.sandbox.cgroups._api import RunGroup

_ROUNDS: Final = 100
_DELAY: Final = 0.01


def kill_and_remove(group: RunGroup) -> None:
    """Kill ``group`` until no task is left (about a second at most), then remove it.

    Raises:
        SandboxError: tasks are still there after the last round, or the rmdir fails.
    """
    for _ in range(_ROUNDS):
        if not group.populated():
            break
        group.kill()
        time.sleep(_DELAY)
    else:
        raise SandboxError(f"cgroup {group.name}: tasks survive SIGKILL")
    group.remove()
