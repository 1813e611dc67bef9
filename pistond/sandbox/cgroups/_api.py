"""The cgroup interface the sandbox codes against: limits, one stage's group, a backend."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import attrs

if TYPE_CHECKING:
    from pathlib import Path


def _memory_bytes(
    _instance: object, _attribute: attrs.Attribute[int | None], value: int | None
) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"memory_bytes must be positive or None, got {value}")


def _max_processes(_instance: object, _attribute: attrs.Attribute[int], value: int) -> None:
    if value <= 0:
        raise ValueError(f"max_processes must be positive, got {value}")


@attrs.frozen
class CgroupLimits:
    """What a stage's cgroup enforces."""

    memory_bytes: int | None = attrs.field(validator=_memory_bytes)
    """Memory (RAM, no swap) of all the stage's processes; None for no limit."""
    max_processes: int = attrs.field(validator=_max_processes)
    """Tasks (processes and threads) alive at once in the group."""


class RunGroup(Protocol):
    """One stage's cgroup: a directory in each hierarchy the backend uses."""

    name: str
    """The unique name the group was created with, e.g. ``box-3-run-17``."""
    procs_files: tuple[str, ...]
    """Every ``cgroup.procs`` file the sandbox child writes its own pid into, first of all."""

    def cpu_time_ns(self) -> int:
        """CPU time of every task that was ever in the group, in nanoseconds."""
        ...

    def memory_peak(self) -> int:
        """Highest memory use of the group, in bytes."""
        ...

    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer killed a task of the group."""
        ...

    def pids_limit_hit(self) -> bool:
        """Whether a fork or clone failed at the group's process limit."""
        ...

    def populated(self) -> bool:
        """Whether any task is left in the group."""
        ...

    def kill(self) -> None:
        """SIGKILL every task in the group once; the caller repeats until not populated."""
        ...

    def remove(self) -> None:
        """Remove every directory of the group; removing a removed group does nothing."""
        ...


class CgroupBackend(Protocol):
    """Creates stage groups on one kind of cgroup host."""

    kind: str
    """``"v2"``, ``"hybrid"``, ``"v1"`` or ``"none"``, as reported by ``status``."""

    def create(self, name: str, limits: CgroupLimits) -> RunGroup:
        """Make the group ``name`` with ``limits`` written.

        Raises:
            SandboxError: the name is taken or invalid, or a directory or limit could not be
                made; whatever was made is removed first.
        """
        ...

    def cleanup_stale(self) -> int:
        """Kill and remove the job groups a previous daemon left behind; returns how many."""
        ...

    @property
    def jobs_dirs(self) -> tuple[Path, ...]:
        """The directories (one per hierarchy) that hold this daemon's job groups."""
        ...
