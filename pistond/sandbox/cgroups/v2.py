"""Pure cgroup v2: job groups under ``<parent>/jobs``, limits, readings and cgroup.kill.

Layout, for a daemon in ``<own>`` (systemd ``Delegate=yes``)::

    <own>/                 cgroup.subtree_control: +memory +pids +cpu
    <own>/daemon/          the daemon's processes, moved here (no internal processes rule)
    <own>/jobs/            cgroup.subtree_control: +memory +pids +cpu
    <own>/jobs/box-3-run-17/   one stage: memory.max, memory.swap.max, memory.oom.group, pids.max
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Final

import attrs

from pistond.errors import SandboxError
from pistond.sandbox.cgroups import _kernfs
from pistond.sandbox.cgroups._api import GroupHandles
from pistond.sandbox.cgroups._stale import kill_and_remove

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

    from pistond.sandbox.cgroups._api import CgroupLimits

logger = logging.getLogger(__name__)

JOBS_GROUP: Final = "jobs"
"""The intermediate group holding every job group."""
DAEMON_LEAF: Final = "daemon"
"""The leaf the daemon's own processes move into when its group must enable controllers."""
WANTED_CONTROLLERS: Final = ("memory", "pids", "cpu")
"""Controllers enabled for job groups when the parent offers them."""
REQUIRED_CONTROLLERS: Final = frozenset({"memory", "pids"})
"""Controllers without which the backend refuses to start."""
_MOVE_ROUNDS: Final = 10
_SETUP: Final = "setup"


def _words(path: Path, *, group: str) -> set[str]:
    return set(_kernfs.read(path, group=group).split())


def _is_root_group(path: Path) -> bool:
    """The root of a cgroup2 hierarchy has no cgroup.type (and is exempt from the leaf rule)."""
    return not (path / "cgroup.type").exists()


def _move_processes(source: Path, leaf: Path) -> None:
    """Move every process of ``source`` into ``leaf`` until ``source`` has none."""
    _kernfs.ensure_dir(leaf, group=_SETUP)
    for _ in range(_MOVE_ROUNDS):
        pids = _kernfs.read_pids(source / "cgroup.procs", group=_SETUP)
        if not pids:
            return
        for pid in pids:
            try:
                _kernfs.write(leaf / "cgroup.procs", str(pid), group=_SETUP)
            except SandboxError:
                if pid in _kernfs.read_pids(source / "cgroup.procs", group=_SETUP):
                    raise
    raise SandboxError("cgroups: the daemon's group keeps gaining processes; cannot move them")


def _enable(
    group: Path, required: Iterable[str], optional: Iterable[str], *, own_group: bool
) -> frozenset[str]:
    """Enable controllers in ``group``'s subtree, first moving its processes to a leaf.

    ``required`` ones are enabled in one write that must succeed; each ``optional`` one is
    tried on its own and skipped with a warning if the kernel refuses it. Returns the
    controllers enabled afterwards.
    """
    control = group / "cgroup.subtree_control"
    current = _words(control, group=_SETUP)
    missing = [c for c in required if c not in current]
    extra = [c for c in optional if c not in current and c not in missing]
    if missing or extra:
        procs = _kernfs.read_pids(group / "cgroup.procs", group=_SETUP)
        if procs and not _is_root_group(group):
            if not own_group:
                raise SandboxError(
                    "cgroups: the configured cgroup root has processes; "
                    "controllers cannot be enabled"
                )
            logger.info("moving the daemon's processes into %s", group / DAEMON_LEAF)
            _move_processes(group, group / DAEMON_LEAF)
    if missing:
        _kernfs.write(control, " ".join(f"+{c}" for c in missing), group=_SETUP)
    for controller in extra:
        try:
            _kernfs.write(control, f"+{controller}", group=_SETUP)
        except SandboxError as exc:
            logger.warning("cgroup controller %s not enabled in %s: %s", controller, group, exc)
    return frozenset(_words(control, group=_SETUP))


@attrs.define(eq=False)
class V2Group:
    """One stage's group in a cgroup2 hierarchy, reused stage after stage (see :meth:`reset`)."""

    name: str
    path: Path
    """The group's directory."""
    procs_files: tuple[str, ...]
    controllers: frozenset[str]
    """Controllers enabled for the group."""
    _limits: CgroupLimits | None = None
    """The limits last written (None: none yet)."""
    _cpu_base: int = 0
    _oom_base: int = 0
    _pids_base: int = 0
    _memory_base: int = 0
    _peak_seen: int = 0
    _peak: _kernfs.PeakCounter | None = None
    _dir_fd: int = -1
    _killed: bool = False
    """cgroup.kill was written: the group is made anew before its next stage (see reset)."""

    def reset(self, limits: CgroupLimits) -> None:
        """Write the limits that changed; the readings start from now.

        The peak restarts through memory.peak's own reset (Linux 6.12) where the kernel has
        it, else from memory.current samples; page cache the group still holds from earlier
        stages is not counted as the new stage's.

        A group that was killed through cgroup.kill is removed and made again first: some
        kernels (6.18 among them) go on killing every process later cloned into such a group
        with CLONE_INTO_CGROUP, as if the kill were still under way.
        """
        if self._killed:
            self._make_anew()
        previous = self._limits
        if "memory" in self.controllers:
            if previous is None:
                _kernfs.write_optional(self.path / "memory.swap.max", "0", group=self.name)
                _kernfs.write(self.path / "memory.oom.group", "1", group=self.name)
            # A new group has no limit: only a set one, or a change, is written.
            if limits.memory_bytes != (None if previous is None else previous.memory_bytes):
                value = "max" if limits.memory_bytes is None else str(limits.memory_bytes)
                _kernfs.write(self.path / "memory.max", value, group=self.name)
        if "pids" in self.controllers and (
            previous is None or limits.max_processes != previous.max_processes
        ):
            _kernfs.write(self.path / "pids.max", str(limits.max_processes), group=self.name)
        self._limits = limits
        self._cpu_base = self._usage_usec()
        if "memory" in self.controllers:
            self._oom_base = self._oom_kills()
            self._memory_base = self._peak_seen = self._current()
            if self._peak is None:
                self._peak = _kernfs.PeakCounter.open(self.path / "memory.peak")
            self._peak.reset()
        if "pids" in self.controllers:
            self._pids_base = self._pids_max_events()

    def handles(self) -> GroupHandles:
        """The group's directory, for clone3 CLONE_INTO_CGROUP."""
        if self._dir_fd < 0:
            self._dir_fd = _kernfs.open_directory(self.path, group=self.name)
        return GroupHandles(cgroup2=self._dir_fd)

    def _usage_usec(self) -> int:
        return _kernfs.read_keyed(self.path / "cpu.stat", group=self.name).get("usage_usec", 0)

    def _oom_kills(self) -> int:
        return _kernfs.read_keyed(self.path / "memory.events", group=self.name).get("oom_kill", 0)

    def _pids_max_events(self) -> int:
        return _kernfs.read_keyed(self.path / "pids.events", group=self.name).get("max", 0)

    def _current(self) -> int:
        return _kernfs.read_int(self.path / "memory.current", group=self.name)

    def _sample_memory(self) -> int:
        """memory.current, remembered as the peak where memory.peak cannot be reset."""
        self._peak_seen = max(self._peak_seen, self._current())
        return self._peak_seen

    def cpu_time_ns(self) -> int:
        """cpu.stat usage_usec since the reset, in nanoseconds (also samples memory.current,
        the peak of kernels whose memory.peak cannot be reset: the supervisor polls this)."""
        usage = self._usage_usec() - self._cpu_base
        if "memory" in self.controllers:
            self._sample_memory()
        return max(0, usage) * 1000

    def memory_peak(self) -> int:
        """Peak memory since the reset, above what the group held at the reset."""
        if "memory" not in self.controllers:
            return 0
        counted = self._peak.read() if self._peak is not None else None
        peak = max(counted or 0, self._sample_memory())
        return max(0, peak - self._memory_base)

    def oom_killed(self) -> bool:
        """memory.events oom_kill grew since the reset."""
        if "memory" not in self.controllers:
            return False
        return self._oom_kills() > self._oom_base

    def pids_limit_hit(self) -> bool:
        """pids.events max grew since the reset."""
        if "pids" not in self.controllers:
            return False
        return self._pids_max_events() > self._pids_base

    def populated(self) -> bool:
        """cgroup.events populated; a removed group has no tasks."""
        if not self.path.is_dir():
            return False
        events = _kernfs.read_keyed(self.path / "cgroup.events", group=self.name)
        return events.get("populated", 0) > 0

    def kill(self) -> None:
        """Write 1 to cgroup.kill: SIGKILL to every task, including ones forking meanwhile."""
        if self.path.is_dir():
            self._killed = True
            _kernfs.write(self.path / "cgroup.kill", "1", group=self.name)

    def _close(self) -> None:
        if self._peak is not None:
            self._peak.close()
            self._peak = None
        if self._dir_fd >= 0:
            os.close(self._dir_fd)
            self._dir_fd = -1

    def _make_anew(self) -> None:
        """rmdir and mkdir the (empty) group: it starts with no limits and no readings."""
        self._close()
        _kernfs.remove_dir(self.path, group=self.name)
        _kernfs.make_dir(self.path, group=self.name)
        self._limits = None
        self._killed = False

    def remove(self) -> None:
        """Close the group's descriptors and rmdir its directory."""
        self._close()
        _kernfs.remove_dir(self.path, group=self.name)


@attrs.define(eq=False)
class V2Backend:
    """Job groups in a cgroup2 hierarchy; make one with :meth:`prepare`."""

    jobs: Path
    """The intermediate group holding the job groups."""
    controllers: frozenset[str]
    """Controllers enabled in ``jobs``' subtree."""
    kind: str = "v2"

    @property
    def jobs_dirs(self) -> tuple[Path, ...]:
        """Every directory holding job groups (one here)."""
        return (self.jobs,)

    @classmethod
    def prepare(
        cls,
        parent: Path,
        *,
        own_group: bool,
        required: frozenset[str] = REQUIRED_CONTROLLERS,
        wanted: Iterable[str] = WANTED_CONTROLLERS,
        jobs_group: str = JOBS_GROUP,
    ) -> V2Backend:
        """Set up ``<parent>/<jobs_group>`` with controllers enabled along the way.

        Args:
            parent: the daemon's own group, or the configured cgroup root.
            own_group: ``parent`` is the daemon's own group, whose processes may be moved into
                ``<parent>/daemon`` (a daemon restarted from that leaf uses its parent again).
            required: controllers that must be available.
            wanted: controllers to enable if available; ``required`` ones always are.
            jobs_group: name of the intermediate group.

        Raises:
            SandboxError: a required controller is missing or the groups cannot be set up.
        """
        _kernfs.check_name(jobs_group)
        if own_group and parent.name == DAEMON_LEAF and (parent.parent / jobs_group).is_dir():
            parent = parent.parent
        _kernfs.ensure_dir(parent, group=_SETUP)
        available = _words(parent / "cgroup.controllers", group=_SETUP)
        absent = sorted(required - available)
        if absent:
            raise SandboxError(
                f"cgroups: controller {', '.join(absent)} is not available to the job groups' "
                "parent; delegate it (systemd Delegate=yes) or enable it in the parent's "
                "cgroup.subtree_control"
            )
        need = sorted(required)
        optional = [c for c in wanted if c in available and c not in required]
        offered = _enable(parent, need, optional, own_group=own_group)
        jobs = parent / jobs_group
        _kernfs.ensure_dir(jobs, group=_SETUP)
        optional = [c for c in optional if c in offered]
        enabled = _enable(jobs, need, optional, own_group=False) & {*need, *optional}
        shown = " ".join(sorted(enabled)) or "none"
        logger.info("cgroup v2 job groups in %s, controllers %s", jobs, shown)
        return cls(jobs=jobs, controllers=enabled)

    def create(self, name: str, limits: CgroupLimits) -> V2Group:
        """Make ``jobs/<name>``, write its limits and reset it.

        Raises:
            SandboxError: the name is taken or invalid, or a limit cannot be written.
        """
        _kernfs.check_name(name)
        path = self.jobs / name
        _kernfs.make_dir(path, group=name)
        group = self._group(name)
        try:
            group.reset(limits)
        except SandboxError:
            group.remove()
            raise
        return group

    def _group(self, name: str) -> V2Group:
        path = self.jobs / name
        return V2Group(
            name=name,
            path=path,
            procs_files=(str(path / "cgroup.procs"),),
            controllers=self.controllers,
        )

    def cleanup_stale(self) -> int:
        """Kill and remove every group left in ``jobs`` by a previous daemon."""
        names = _kernfs.subdirectories(self.jobs)
        for name in names:
            kill_and_remove(self._group(name))
        if names:
            logger.warning("removed %d stale cgroup v2 job groups", len(names))
        return len(names)
