"""Where the cgroup hierarchies are mounted and where this process sits in each."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

import attrs

from pistond.errors import SandboxError

UNIFIED = ""
"""Key of the cgroup2 (unified) hierarchy in :func:`read_membership`'s answer."""

_OCTAL = re.compile(r"\\([0-7]{3})")


@attrs.frozen
class Mount:
    """One cgroup or cgroup2 mount from mountinfo."""

    point: Path
    """Where it is mounted."""
    root: str
    """The path of the hierarchy that is mounted there (``/`` unless a subtree is bound)."""
    fstype: str
    """``cgroup`` (v1) or ``cgroup2``."""
    controllers: frozenset[str]
    """v1 controllers of the hierarchy (``memory``, ``cpu``, ``cpuacct``...); empty for cgroup2."""


@attrs.frozen
class Layout:
    """The cgroup layout of the host, as seen under the cgroup root directory."""

    kind: str
    """``"v2"``, ``"hybrid"``, ``"v1"`` or ``"none"``."""
    unified: Mount | None
    """The cgroup2 mount (at the root for v2, at ``unified`` for hybrid)."""
    v1: dict[str, Mount] = attrs.field(factory=dict)
    """v1 mount by controller name; co-mounted controllers share one Mount."""


def _unescape(field: str) -> str:
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def read_mounts(mountinfo: Path) -> list[Mount]:
    """Every cgroup and cgroup2 mount listed in a mountinfo file, in mount order.

    Raises:
        SandboxError: the file cannot be read.
    """
    try:
        text = mountinfo.read_text()
    except OSError as exc:
        raise SandboxError(f"cannot read the mount table ({exc.strerror})") from None
    mounts: list[Mount] = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        options = tail[2].split(",")
        controllers = (
            frozenset(o for o in options if "=" not in o) if tail[0] == "cgroup" else frozenset()
        )
        mounts.append(
            Mount(
                point=Path(_unescape(fields[4])),
                root=_unescape(fields[3]),
                fstype=tail[0],
                controllers=controllers,
            )
        )
    return mounts


def read_membership(proc_self_cgroup: Path) -> dict[str, str]:
    """This process's cgroup path per v1 controller, and per :data:`UNIFIED` for cgroup2.

    Raises:
        SandboxError: the file cannot be read.
    """
    try:
        text = proc_self_cgroup.read_text()
    except OSError as exc:
        raise SandboxError(f"cannot read the daemon's cgroup membership ({exc.strerror})") from None
    membership: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _hierarchy, controllers, path = parts
        if not controllers:
            membership[UNIFIED] = path
            continue
        for controller in controllers.split(","):
            if "=" not in controller:
                membership[controller] = path
    return membership


def classify(mounts: list[Mount], root: Path) -> Layout:
    """Tell pure v2, hybrid, v1-only or none from the cgroup mounts under ``root``."""
    latest: dict[Path, Mount] = {}
    for mount in mounts:
        latest[mount.point] = mount
    top = latest.get(root)
    if top is not None and top.fstype == "cgroup2":
        return Layout(kind="v2", unified=top)
    v1: dict[str, Mount] = {}
    unified: Mount | None = None
    for point, mount in latest.items():
        if point.parent != root:
            continue
        if mount.fstype == "cgroup":
            for controller in mount.controllers:
                v1[controller] = mount
        elif point.name == "unified":
            unified = mount
    if not v1:
        return Layout(kind="none", unified=None)
    return Layout(kind="hybrid" if unified else "v1", unified=unified, v1=v1)


def group_path(mount: Mount, path: str) -> Path:
    """The directory of hierarchy path ``path`` (as in /proc/self/cgroup) under ``mount``.

    Raises:
        SandboxError: the path lies outside the mounted part of the hierarchy, or climbs.
    """
    hierarchy = PurePosixPath("/", path)
    if ".." in hierarchy.parts:
        raise SandboxError("a cgroup path climbs out of its hierarchy; set PISTON_CGROUP_ROOT")
    try:
        relative = hierarchy.relative_to(PurePosixPath("/", mount.root))
    except ValueError:
        raise SandboxError(
            "the daemon's cgroup is outside the mounted hierarchy; set PISTON_CGROUP_ROOT"
        ) from None
    return mount.point.joinpath(*relative.parts)


def configured_path(mount: Mount, cgroup_root: str) -> Path:
    """The directory of the configured ``cgroup_root`` under ``mount``.

    Raises:
        SandboxError: ``cgroup_root`` climbs with ``..``.
    """
    relative = PurePosixPath("/", cgroup_root).relative_to("/")
    if ".." in relative.parts:
        raise SandboxError("PISTON_CGROUP_ROOT must not contain '..'")
    return mount.point.joinpath(*relative.parts)
