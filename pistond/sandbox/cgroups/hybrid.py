"""Hybrid and v1-only hosts: v1 memory, pids, cpuacct and freezer groups, plus a unified group.

Every hierarchy gets ``<parent>/pistond-jobs/<name>`` (the parent is the daemon's own group in
that hierarchy, or the configured cgroup root); co-mounted controllers share one directory.
On a hybrid host the unified (cgroup2) group gives ``cgroup.kill``, ``cgroup.events`` and
``cpu.stat``; without it, the freezer group makes the kill race-free and cpuacct counts CPU.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import TYPE_CHECKING, Final

import attrs

from pistond.errors import SandboxError
from pistond.sandbox.cgroups import _kernfs
from pistond.sandbox.cgroups._api import GroupHandles
from pistond.sandbox.cgroups._stale import kill_and_remove

if TYPE_CHECKING:
    from pathlib import Path

    from pistond.sandbox.cgroups._api import CgroupLimits

logger = logging.getLogger(__name__)

JOBS_GROUP: Final = "pistond-jobs"
"""The intermediate group holding every job group, in each hierarchy."""
_FREEZE_POLLS: Final = 20
_FREEZE_DELAY: Final = 0.0005
_SETUP: Final = "setup"


def _procs(directory: Path | None, *, group: str) -> list[int]:
    if directory is None or not directory.is_dir():
        return []
    return _kernfs.read_pids(directory / "cgroup.procs", group=group)


def _sigkill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue


@attrs.define(eq=False)
class HybridGroup:
    """One stage's groups in the v1 hierarchies (and the unified one on hybrid hosts), reused
    stage after stage (see :meth:`reset`)."""

    name: str
    procs_files: tuple[str, ...]
    memory: Path
    """The v1 memory group."""
    pids: Path
    """The v1 pids group (the memory group's directory when co-mounted)."""
    cpuacct: Path | None
    """The v1 cpuacct group, when CPU time is not read from the unified group."""
    freezer: Path | None
    """The v1 freezer group, when the kill cannot use the unified cgroup.kill."""
    unified: Path | None
    """The cgroup2 group of a hybrid host."""
    unified_kill: bool
    """The unified group has cgroup.kill."""
    dirs: tuple[Path, ...]
    """Every distinct directory of the group, in creation order."""
    _limits: CgroupLimits | None = None
    _cpu_base: int = 0
    _oom_base: int = 0
    _pids_base: int = 0
    _memory_base: int = 0
    _handles: GroupHandles | None = None
    _killed: bool = False
    """The unified cgroup.kill was written: that group is made anew before the next stage."""

    def reset(self, limits: CgroupLimits) -> None:
        """Write the limits that changed; the readings start from now.

        The v1 peak restarts from the current use (a write to memory.max_usage_in_bytes);
        page cache the group still holds from earlier stages is not counted as the new
        stage's. A unified group that was killed through cgroup.kill is removed and made
        again first: some kernels (6.18 among them) go on killing every process later cloned
        into it with CLONE_INTO_CGROUP.
        """
        if self._killed and self.unified is not None:
            self._close_handles()
            _kernfs.remove_dir(self.unified, group=self.name)
            _kernfs.make_dir(self.unified, group=self.name)
            self._cpu_base = 0
        self._killed = False
        self._write_limits(limits)
        self._limits = limits
        _kernfs.write(self.memory / "memory.max_usage_in_bytes", "0", group=self.name)
        _kernfs.write_optional(self.memory / "memory.failcnt", "0", group=self.name)
        self._memory_base = self._usage()
        self._oom_base = self._oom_kills()
        self._pids_base = self._pids_max_events()
        if self.cpuacct is not None:
            _kernfs.write(self.cpuacct / "cpuacct.usage", "0", group=self.name)
            self._cpu_base = 0
        else:
            self._cpu_base = self._unified_usage_ns()

    def _write_limits(self, limits: CgroupLimits) -> None:
        """The kernel keeps memsw >= memory: memsw is raised first, and lowered last."""
        previous = self._limits
        name = self.name
        # A new group has no limit: only a set one, or a change, is written.
        if limits.memory_bytes != (None if previous is None else previous.memory_bytes):
            value = "-1" if limits.memory_bytes is None else str(limits.memory_bytes)
            raising = previous is not None and (
                limits.memory_bytes is None
                or (
                    previous.memory_bytes is not None
                    and limits.memory_bytes > previous.memory_bytes
                )
            )
            memory = self.memory / "memory.limit_in_bytes"
            memsw = self.memory / "memory.memsw.limit_in_bytes"
            if raising:
                _kernfs.write_optional(memsw, value, group=name)
                _kernfs.write(memory, value, group=name)
            else:
                _kernfs.write(memory, value, group=name)
                _kernfs.write_optional(memsw, value, group=name)
        if previous is None:
            try:
                _kernfs.write_optional(self.memory / "memory.swappiness", "0", group=name)
            except SandboxError:
                logger.debug("cgroup %s: memory.swappiness refused", name)
        if previous is None or limits.max_processes != previous.max_processes:
            _kernfs.write(self.pids / "pids.max", str(limits.max_processes), group=name)

    def handles(self) -> GroupHandles:
        """The unified directory (clone3 CLONE_INTO_CGROUP) and each v1 ``tasks`` file."""
        if self._handles is None:
            cgroup2 = -1
            tasks: list[int] = []
            try:
                if self.unified is not None:
                    cgroup2 = _kernfs.open_directory(self.unified, group=self.name)
                for directory in self.dirs:
                    if directory != self.unified:
                        tasks.append(_kernfs.open_for_write(directory / "tasks", group=self.name))
            except SandboxError:
                for fd in (cgroup2, *tasks):
                    if fd >= 0:
                        os.close(fd)
                raise
            self._handles = GroupHandles(cgroup2=cgroup2, tasks=tuple(tasks))
        return self._handles

    def _close_handles(self) -> None:
        if self._handles is not None:
            for fd in (self._handles.cgroup2, *self._handles.tasks):
                if fd >= 0:
                    os.close(fd)
            self._handles = None

    def _usage(self) -> int:
        return _kernfs.read_int(self.memory / "memory.usage_in_bytes", group=self.name)

    def _oom_kills(self) -> int:
        control = _kernfs.read_keyed(self.memory / "memory.oom_control", group=self.name)
        return control.get("oom_kill", 0)

    def _pids_max_events(self) -> int:
        return _kernfs.read_keyed(self.pids / "pids.events", group=self.name).get("max", 0)

    def _unified_usage_ns(self) -> int:
        if self.unified is None:
            return 0
        stat = _kernfs.read_keyed(self.unified / "cpu.stat", group=self.name)
        return stat.get("usage_usec", 0) * 1000

    def cpu_time_ns(self) -> int:
        """cpuacct.usage, or the unified cpu.stat usage_usec in nanoseconds, since the reset."""
        if self.cpuacct is not None:
            usage = _kernfs.read_int(self.cpuacct / "cpuacct.usage", group=self.name)
        else:
            usage = self._unified_usage_ns()
        return max(0, usage - self._cpu_base)

    def memory_peak(self) -> int:
        """memory.max_usage_in_bytes since the reset, above what the group held then."""
        peak = _kernfs.read_int(self.memory / "memory.max_usage_in_bytes", group=self.name)
        return max(0, peak - self._memory_base)

    def oom_killed(self) -> bool:
        """memory.oom_control oom_kill grew since the reset; on old kernels under_oom, or
        failures at the limit."""
        control = _kernfs.read_keyed(self.memory / "memory.oom_control", group=self.name)
        if "oom_kill" in control:
            return control["oom_kill"] > self._oom_base
        if control.get("under_oom", 0) > 0:
            return True
        failures = _kernfs.read_int(self.memory / "memory.failcnt", group=self.name)
        limit = _kernfs.read_int(self.memory / "memory.limit_in_bytes", group=self.name)
        peak = _kernfs.read_int(self.memory / "memory.max_usage_in_bytes", group=self.name)
        return failures > 0 and peak >= limit

    def pids_limit_hit(self) -> bool:
        """pids.events max grew since the reset."""
        return self._pids_max_events() > self._pids_base

    def populated(self) -> bool:
        """cgroup.events populated in the unified group, else any pid in a v1 cgroup.procs."""
        if self.unified is not None and self.unified.is_dir():
            events = _kernfs.read_keyed(self.unified / "cgroup.events", group=self.name)
            return events.get("populated", 0) > 0
        return any(_procs(directory, group=self.name) for directory in self.dirs)

    def kill(self) -> None:
        """SIGKILL every task: unified cgroup.kill, else freeze, kill each pid, thaw."""
        if self.unified_kill and self.unified is not None and self.unified.is_dir():
            self._killed = True
            _kernfs.write(self.unified / "cgroup.kill", "1", group=self.name)
            return
        if self.freezer is not None and self.freezer.is_dir():
            self._kill_frozen(self.freezer)
            return
        for directory in self.dirs:
            _sigkill(_procs(directory, group=self.name))

    def _kill_frozen(self, freezer: Path) -> None:
        """Freeze the group so nothing forks or exits, SIGKILL each pid, then thaw."""
        state = freezer / "freezer.state"
        _kernfs.write(state, "FROZEN", group=self.name)
        try:
            for _ in range(_FREEZE_POLLS):
                if _kernfs.read(state, group=self.name).strip() == "FROZEN":
                    break
                time.sleep(_FREEZE_DELAY)
            _sigkill(_procs(freezer, group=self.name))
        finally:
            _kernfs.write(state, "THAWED", group=self.name)

    def remove(self) -> None:
        """Close the group's descriptors, then rmdir every directory, the unified one last.

        Raises:
            SandboxError: a directory is still busy; the others are removed anyway.
        """
        self._close_handles()
        failure: SandboxError | None = None
        for directory in self.dirs:
            try:
                _kernfs.remove_dir(directory, group=self.name)
            except SandboxError as exc:
                failure = failure or exc
        if failure is not None:
            raise failure


@attrs.define(eq=False)
class HybridBackend:
    """Job groups on hybrid and v1-only hosts; make one with :meth:`prepare`."""

    kind: str
    """``"hybrid"`` with a unified hierarchy, else ``"v1"``."""
    memory: Path
    """Jobs directory in the memory hierarchy."""
    pids: Path
    """Jobs directory in the pids hierarchy."""
    cpuacct: Path | None
    """Jobs directory in the cpuacct hierarchy, if CPU time comes from there."""
    freezer: Path | None
    """Jobs directory in the freezer hierarchy, if kills go through the freezer."""
    unified: Path | None
    """Jobs directory in the unified hierarchy (hybrid hosts)."""
    unified_kill: bool
    """The unified hierarchy offers cgroup.kill."""

    @property
    def jobs_dirs(self) -> tuple[Path, ...]:
        """Every distinct directory holding job groups, unified last."""
        found = (self.memory, self.pids, self.cpuacct, self.freezer, self.unified)
        return tuple(dict.fromkeys(d for d in found if d is not None))

    @classmethod
    def prepare(
        cls,
        *,
        memory: Path,
        pids: Path,
        cpuacct: Path | None,
        freezer: Path | None,
        unified: Path | None,
        jobs_group: str = JOBS_GROUP,
    ) -> HybridBackend:
        """Make the jobs directory under each parent group and pick the CPU and kill sources.

        Args:
            memory: the parent group in the v1 memory hierarchy.
            pids: the parent group in the v1 pids hierarchy.
            cpuacct: the parent group in the v1 cpuacct hierarchy, if mounted.
            freezer: the parent group in the v1 freezer hierarchy, if mounted.
            unified: the parent group in the cgroup2 hierarchy of a hybrid host.
            jobs_group: name of the intermediate group.

        Raises:
            SandboxError: a jobs directory cannot be made.
        """
        _kernfs.check_name(jobs_group)
        unified_jobs = None
        if unified is not None:
            unified_jobs = unified / jobs_group
            _kernfs.ensure_dir(unified_jobs, group=_SETUP)
        unified_kill = unified_jobs is not None and (unified_jobs / "cgroup.kill").exists()
        unified_cpu = unified_jobs is not None and (unified_jobs / "cpu.stat").exists()
        backend = cls(
            kind="v1" if unified is None else "hybrid",
            memory=memory / jobs_group,
            pids=pids / jobs_group,
            cpuacct=None if unified_cpu or cpuacct is None else cpuacct / jobs_group,
            freezer=None if unified_kill or freezer is None else freezer / jobs_group,
            unified=unified_jobs,
            unified_kill=unified_kill,
        )
        for directory in backend.jobs_dirs:
            _kernfs.ensure_dir(directory, group=_SETUP)
        if backend.cpuacct is None and not unified_cpu:
            logger.warning("no cpuacct hierarchy nor unified cpu.stat: CPU time reads as 0")
        if backend.freezer is None and not unified_kill:
            logger.warning("no cgroup.kill nor freezer: kills signal the listed pids only")
        logger.info(
            "cgroup %s job groups in %s", backend.kind, ", ".join(map(str, backend.jobs_dirs))
        )
        return backend

    def _group(self, name: str) -> HybridGroup:
        def child(jobs: Path | None) -> Path | None:
            return None if jobs is None else jobs / name

        dirs = tuple(directory / name for directory in self.jobs_dirs)
        return HybridGroup(
            name=name,
            procs_files=tuple(str(directory / "cgroup.procs") for directory in dirs),
            memory=self.memory / name,
            pids=self.pids / name,
            cpuacct=child(self.cpuacct),
            freezer=child(self.freezer),
            unified=child(self.unified),
            unified_kill=self.unified_kill,
            dirs=dirs,
        )

    def create(self, name: str, limits: CgroupLimits) -> HybridGroup:
        """Make the group in every hierarchy, write its limits and reset it.

        Raises:
            SandboxError: the name is taken or invalid, or a limit cannot be written; the
                directories made so far are removed.
        """
        _kernfs.check_name(name)
        group = self._group(name)
        made: list[Path] = []
        try:
            for directory in group.dirs:
                _kernfs.make_dir(directory, group=name)
                made.append(directory)
            group.reset(limits)
        except SandboxError:
            for directory in reversed(made):
                try:
                    _kernfs.remove_dir(directory, group=name)
                except SandboxError:
                    logger.warning("cannot remove the half-made cgroup %s", directory)
            raise
        return group

    def cleanup_stale(self) -> int:
        """Kill and remove every group left in the jobs directories by a previous daemon."""
        names = sorted({n for d in self.jobs_dirs for n in _kernfs.subdirectories(d)})
        for name in names:
            kill_and_remove(self._group(name))
        if names:
            logger.warning("removed %d stale cgroup %s job groups", len(names), self.kind)
        return len(names)
