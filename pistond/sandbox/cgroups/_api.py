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


@attrs.frozen
class GroupHandles:
    """A group's open descriptors for the native launcher (owned by the group)."""

    cgroup2: int = -1
    """The group's cgroup2 directory, for clone3 CLONE_INTO_CGROUP; -1 without cgroup2."""
    tasks: tuple[int, ...] = ()
    """The group's ``tasks`` file in each v1 hierarchy, opened for writing."""


class RunGroup(Protocol):
    """One stage's cgroup: a directory in each hierarchy the backend uses.

    A group is made once and reused: :meth:`reset` readies it for the next stage (its limits,
    a fresh peak, the counters' starting points), and every reading is of the stage since the
    last reset. The caller resets only an empty group.
    """

    name: str
    """The unique name the group was created with, e.g. ``box-3-run``."""
    procs_files: tuple[str, ...]
    """Every ``cgroup.procs`` file the sandbox child writes its own pid into, first of all."""

    def reset(self, limits: CgroupLimits) -> None:
        """Write ``limits`` (where they changed) and start the readings from now.

        Raises:
            SandboxError: a limit or counter could not be written.
        """
        ...

    def handles(self) -> GroupHandles:
        """The descriptors the launcher joins the group through (opened once, kept)."""
        ...

    def cpu_time_ns(self) -> int:
        """CPU time of every task in the group since the reset, in nanoseconds."""
        ...

    def memory_peak(self) -> int:
        """Highest memory use since the reset, above what the group held then, in bytes."""
        ...

    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer killed a task of the group since the reset."""
        ...

    def pids_limit_hit(self) -> bool:
        """Whether a fork or clone failed at the group's process limit since the reset."""
        ...

    def populated(self) -> bool:
        """Whether any task is left in the group."""
        ...

    def kill(self) -> None:
        """SIGKILL every task in the group once; the caller repeats until not populated."""
        ...

    def remove(self) -> None:
        """Close its descriptors and remove every directory of the group (empty); removing a
        removed group does nothing."""
        ...


class CgroupBackend(Protocol):
    """Creates stage groups on one kind of cgroup host."""

    kind: str
    """``"v2"``, ``"hybrid"``, ``"v1"`` or ``"none"``, as reported by ``status``."""

    def create(self, name: str, limits: CgroupLimits) -> RunGroup:
        """Make the group ``name`` with ``limits`` written (and reset: ready for a stage).

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
