"""No usable cgroups: groups that measure nothing; the sandbox's PID-1 kill and rlimits remain."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from pistond.sandbox.cgroups import _kernfs
from pistond.sandbox.cgroups._api import GroupHandles

if TYPE_CHECKING:
    from pistond.sandbox.cgroups._api import CgroupLimits


@attrs.define(eq=False)
class NoneGroup:
    """A group with no directories: readings are 0 or False, kill and remove do nothing."""

    name: str
    procs_files: tuple[str, ...] = ()

    def reset(self, limits: CgroupLimits) -> None:
        """Nothing to write."""

    def handles(self) -> GroupHandles:
        """No descriptors: the launcher joins nothing."""
        return GroupHandles()

    def cpu_time_ns(self) -> int:
        """Always 0: CPU time is bounded by RLIMIT_CPU only."""
        return 0

    def memory_peak(self) -> int:
        """Always 0."""
        return 0

    def oom_killed(self) -> bool:
        """Always False."""
        return False

    def pids_limit_hit(self) -> bool:
        """Always False."""
        return False

    def populated(self) -> bool:
        """Always False: the sandbox's PID 1 is the only handle on its tasks."""
        return False

    def kill(self) -> None:
        """Nothing to do: the sandbox kills its PID 1 through its pidfd."""

    def remove(self) -> None:
        """Nothing to remove."""


@attrs.define(eq=False)
class NoneBackend:
    """The backend of hosts without usable cgroups, reported as degraded."""

    kind: str = "none"

    @property
    def jobs_dirs(self) -> tuple[()]:
        """No directories."""
        return ()

    def create(self, name: str, limits: CgroupLimits) -> NoneGroup:
        """A group that records only its name.

        Raises:
            SandboxError: the name is invalid (as with the other backends).
        """
        _kernfs.check_name(name)
        return NoneGroup(name=name)

    def cleanup_stale(self) -> int:
        """Nothing can be left over."""
        return 0
