"""Cgroup backends: :func:`detect` picks pure v2, hybrid, v1-only or none at daemon start.

Job groups live under the daemon's own group in each hierarchy (read from /proc/self/cgroup),
or under ``config.cgroup_root`` when it is set. A group is made once per box slot and stage
kind and reused: ``reset`` readies it for each stage. The sandbox joins it first of all (the
Python fork server writes PID 1 into every ``RunGroup.procs_files`` entry; the native launcher
clones PID 1 into the cgroup2 group and has it join the v1 ones through ``handles``); the
supervisor polls the readings and calls ``kill`` until ``populated`` is False; ``remove``
happens when the daemon stops.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from pistond.errors import SandboxError
from pistond.sandbox.cgroups._api import CgroupBackend as CgroupBackend  # noqa: TC001 (re-exported at runtime)
from pistond.sandbox.cgroups._api import CgroupLimits as CgroupLimits
from pistond.sandbox.cgroups._api import GroupHandles as GroupHandles
from pistond.sandbox.cgroups._api import RunGroup as RunGroup
from pistond.sandbox.cgroups._layout import (
    UNIFIED,
    Layout,
    Mount,
    classify,
    configured_path,
    group_path,
    read_membership,
    read_mounts,
)
from pistond.sandbox.cgroups.hybrid import JOBS_GROUP as HYBRID_JOBS_GROUP
from pistond.sandbox.cgroups.hybrid import HybridBackend as HybridBackend
from pistond.sandbox.cgroups.hybrid import HybridGroup as HybridGroup
from pistond.sandbox.cgroups.none import NoneBackend as NoneBackend
from pistond.sandbox.cgroups.none import NoneGroup as NoneGroup
from pistond.sandbox.cgroups.v2 import V2Backend as V2Backend
from pistond.sandbox.cgroups.v2 import V2Group as V2Group

if TYPE_CHECKING:
    from pistond.config import DaemonConfig

logger = logging.getLogger(__name__)


def _parent(mount: Mount, controller: str, membership: dict[str, str], cgroup_root: str) -> Path:
    """The parent of the job groups in ``mount``'s hierarchy."""
    if cgroup_root:
        return configured_path(mount, cgroup_root)
    try:
        return group_path(mount, membership[controller])
    except KeyError:
        label = controller or "cgroup2"
        raise SandboxError(f"the daemon is in no {label} cgroup; set PISTON_CGROUP_ROOT") from None


def _v1_parent(
    layout: Layout, controller: str, membership: dict[str, str], cgroup_root: str
) -> Path | None:
    mount = layout.v1.get(controller)
    return None if mount is None else _parent(mount, controller, membership, cgroup_root)


def detect(
    config: DaemonConfig,
    *,
    root: Path = Path("/sys/fs/cgroup"),
    proc_self_cgroup: Path = Path("/proc/self/cgroup"),
    mountinfo: Path = Path("/proc/self/mountinfo"),
    jobs_group: str | None = None,
) -> CgroupBackend:
    """Find the host's cgroup layout and set up the job groups' parent for it.

    Args:
        config: the daemon configuration (``cgroup_root``).
        root: where the cgroup filesystems are mounted.
        proc_self_cgroup: this process's membership file.
        mountinfo: this process's mount table.
        jobs_group: name of the intermediate group holding job groups (default: ``jobs`` on
            v2, ``pistond-jobs`` on hybrid and v1 hosts).

    Returns:
        A backend whose ``kind`` is ``"v2"``, ``"hybrid"``, ``"v1"`` or ``"none"``.

    Raises:
        SandboxError: cgroups are mounted but unusable (a required controller is missing, the
            daemon's groups cannot be found or set up); the message says what to change.
    """
    layout = classify(read_mounts(mountinfo), root)
    cgroup_root = config.cgroup_root
    if layout.kind == "none":
        logger.warning("no cgroup hierarchy under %s: limits are rlimits only", root)
        return NoneBackend()
    membership = read_membership(proc_self_cgroup)
    if layout.kind == "v2":
        assert layout.unified is not None
        parent = _parent(layout.unified, UNIFIED, membership, cgroup_root)
        if jobs_group is None:
            return V2Backend.prepare(parent, own_group=not cgroup_root)
        return V2Backend.prepare(parent, own_group=not cgroup_root, jobs_group=jobs_group)
    memory = _v1_parent(layout, "memory", membership, cgroup_root)
    pids = _v1_parent(layout, "pids", membership, cgroup_root)
    if memory is None or pids is None:
        missing = "memory" if memory is None else "pids"
        raise SandboxError(f"cgroups: the v1 {missing} controller is not mounted")
    unified = None
    if layout.unified is not None:
        unified = _parent(layout.unified, UNIFIED, membership, cgroup_root)
    return HybridBackend.prepare(
        memory=memory,
        pids=pids,
        cpuacct=_v1_parent(layout, "cpuacct", membership, cgroup_root),
        freezer=_v1_parent(layout, "freezer", membership, cgroup_root),
        unified=unified,
        jobs_group=HYBRID_JOBS_GROUP if jobs_group is None else jobs_group,
    )
