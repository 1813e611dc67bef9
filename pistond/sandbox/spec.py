"""What a sandboxed stage is asked to be: the records jobs hand to the sandbox.

``StageSpec`` is what the job manager builds for one stage; ``SpawnSpec`` is what the daemon
sends to the fork server for one child (``StageSpec`` plus everything the daemon prepared:
box path, uid, cgroup files). Both are plain frozen records with a dict wire form, so the fork
server needs nothing but the standard library and this module to read them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import attrs


@attrs.frozen
class Bind:
    """A host path made visible inside the sandbox."""

    source: str
    """Absolute host path."""
    target: str
    """Absolute path inside the sandbox."""
    writable: bool = False


@attrs.frozen
class RootView:
    """What the sandbox's ``/`` is built from.

    With ``path`` set, that directory (a runtime's self-contained root filesystem) is bound
    read-only, nosuid, nodev as ``/``. With ``path`` None, the root is a fresh tmpfs holding
    read-only binds of the host's ``/usr``, the ``/bin``, ``/lib``, ``/lib64``, ``/sbin`` links
    and a curated ``/etc`` (the ``host`` runtime source).
    """

    path: str | None = None
    binds: tuple[Bind, ...] = ()
    """Further read-only (or writable) binds, applied after the root is in place."""


@attrs.frozen
class StageLimits:
    """Every limit of one stage, already resolved (config, package, request)."""

    wall_time_ms: int
    cpu_time_ms: int
    memory_bytes: int | None
    """cgroup memory limit; None for no limit."""
    max_processes: int
    """pids.max of the stage's cgroup, and RLIMIT_NPROC as a backstop."""
    max_open_files: int
    max_file_size: int
    output_max_size: int
    """Bytes kept per output stream; more ends the stage with OL or EL."""


WORKDIR: Final = "/box/submission"
"""A stage's working directory: the submitted files, in the box."""


@attrs.frozen
class StageSpec:
    """One stage to run in a fresh sandbox over a job's box."""

    argv: tuple[str, ...]
    """Program and arguments, resolved inside the sandbox (argv[0] absolute)."""
    env: Mapping[str, str]
    """The complete environment of the program; nothing of the daemon's is added."""
    root: RootView
    limits: StageLimits
    cwd: str = WORKDIR
    network: bool = False
    """True gives the sandbox the host's network namespace (PISTON_DISABLE_NETWORKING=false)."""


@attrs.frozen
class SpawnSpec:
    """All the fork server's child needs to build the sandbox and exec (DESIGN.md steps 1-7)."""

    stage: StageSpec
    box_path: str
    """Host path of the job's box tmpfs, bound read-write at ``/box``."""
    uid: int
    """Box slot uid; also the gid. Never 0."""
    cgroup_procs: tuple[str, ...]
    """``cgroup.procs`` files the child writes its pid into before anything else."""
    hostname: str = "pistond"
    tmp_size: int = 64 * 1024 * 1024
    """Bytes of the fresh /tmp and /dev/shm tmpfs."""
    tmp_inodes: int = 4096


@attrs.frozen
class RootPlan:
    """What a sandbox's static root is built from: sandboxes with equal plans get equal roots.

    The static root is everything but the box, ``/tmp``, ``/dev/shm`` and ``/proc``
    (:func:`pistond.sandbox.mounts.prepare_root`).
    """

    root: RootView
    network: bool
    """The sandbox shares the host's network (the host view then has ``/etc/resolv.conf``)."""
    hostname: str
    box_uids: tuple[int, ...]
    """The uids the host view's generated ``/etc/passwd`` and ``/etc/group`` name ``box``."""
    shared: bool = False
    """The root serves many sandboxes (a launcher template): the host view's ``/etc`` files are
    copied in and ``/dev``'s nodes made in place, instead of bind mounts, so that each
    sandbox's copy of the namespace holds only a few mounts. Same content either way."""


def root_plan(spec: SpawnSpec, box_uids: tuple[int, ...] = (), *, shared: bool = False) -> RootPlan:
    """The root plan of ``spec``; its passwd names ``box_uids`` (default: the spec's uid)."""
    return RootPlan(
        root=spec.stage.root,
        network=spec.stage.network,
        hostname=spec.hostname,
        box_uids=box_uids or (spec.uid,),
        shared=shared,
    )


def plan_to_wire(plan: RootPlan) -> dict[str, Any]:
    """The root plan as plain dicts, lists and scalars (JSON-ready)."""
    return attrs.asdict(plan, value_serializer=_plain)


def plan_from_wire(data: Mapping[str, Any]) -> RootPlan:
    """Rebuild a root plan from :func:`plan_to_wire` output."""
    root = data["root"]
    return RootPlan(
        root=RootView(path=root["path"], binds=tuple(Bind(**bind) for bind in root["binds"])),
        network=bool(data["network"]),
        hostname=str(data["hostname"]),
        box_uids=tuple(int(uid) for uid in data["box_uids"]),
        shared=bool(data["shared"]),
    )


def spec_to_wire(spec: SpawnSpec) -> dict[str, Any]:
    """The spawn spec as plain dicts, lists and scalars (msgpack-ready)."""
    return attrs.asdict(spec, value_serializer=_plain)


def spec_from_wire(data: Mapping[str, Any]) -> SpawnSpec:
    """Rebuild a spawn spec from :func:`spec_to_wire` output."""
    stage = data["stage"]
    root = stage["root"]
    return SpawnSpec(
        stage=StageSpec(
            argv=tuple(stage["argv"]),
            env=dict(stage["env"]),
            root=RootView(
                path=root["path"],
                binds=tuple(Bind(**bind) for bind in root["binds"]),
            ),
            limits=StageLimits(**stage["limits"]),
            cwd=stage["cwd"],
            network=stage["network"],
        ),
        box_path=data["box_path"],
        uid=data["uid"],
        cgroup_procs=tuple(data["cgroup_procs"]),
        hostname=data["hostname"],
        tmp_size=data["tmp_size"],
        tmp_inodes=data["tmp_inodes"],
    )


def _plain(_instance: object, _field: object, value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return dict(value)
    return value
