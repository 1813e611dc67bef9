"""The daemon's sandbox service: boxes, their stages, and the spawner and cgroups under them.

Usage::

    async with open_sandbox(config, spawner) as sandbox:
        async with sandbox.open_box(slot) as box:
            box.write_files(files)
            result = await box.run_stage(spec, stdin=b"")
            async with box.open_stage(spec) as stage:  # interactive
                await stage.write(data)
                await stage.close_stdin()
                async for stream, chunk in stage.output():
                    ...
                result = await stage.wait()

Every stage runs in a fresh sandbox (started by the native launcher, or the Python fork server
where the launcher is not available) over the job's box, in its box slot's cgroup for that
stage, reset for it; :mod:`pistond.sandbox.supervise` enforces its limits and always cleans up.
"""

from __future__ import annotations

import hashlib
import logging
import os
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import attrs
import trio

from pistond.errors import SandboxError
from pistond.models import SandboxInfo
from pistond.sandbox.box import BoxMount, cleanup_stale_boxes, open_box
from pistond.sandbox.cgroups import CgroupBackend, CgroupLimits, RunGroup, detect
from pistond.sandbox.spawners import RawSpawner, Spawner, SpawnRequest, wrap_spawner
from pistond.sandbox.spec import SpawnSpec, StageLimits, StageSpec
from pistond.sandbox.supervise import SupervisedStage as Stage
from pistond.sandbox.supervise import open_supervised_stage

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence

    from pistond.config import DaemonConfig
    from pistond.models import SourceFile, StageResult
    from pistond.sandbox.contract import Admission
    from pistond.sandbox.hostfs import BoxTree

__all__ = ["Box", "Sandbox", "Stage", "jobs_group_name", "open_sandbox"]

logger = logging.getLogger(__name__)


@attrs.define(eq=False)
class Box:
    """A job's box: its files, and the stages that run over them, one at a time.

    A stage's result is returned as soon as it is known; its sandbox then goes away in the
    box's own nursery, and the box's next stage (and its end) waits for that.
    """

    _sandbox: Sandbox
    _storage: BoxMount
    _releases: trio.Nursery
    _last: Stage | None = None

    @property
    def slot(self) -> int:
        """The box slot."""
        return self._storage.slot

    @property
    def uid(self) -> int:
        """The uid (and gid) every stage of this box runs as."""
        return self._storage.uid

    @property
    def root_fd(self) -> int:
        """The box's root directory, opened without following links (owned by the box)."""
        return self._storage.root_fd

    def write_files(self, files: Sequence[SourceFile]) -> None:
        """Write the submitted files into the box, symlink-safely; call before any stage.

        Raises:
            SandboxError: a name is invalid, a file exists already, or the box is full.
        """
        self._storage.write_files(files)

    def read_submission(
        self,
        *,
        max_entries: int,
        max_bytes: int,
        skip: Callable[[str, bool], bool] | None = None,
    ) -> BoxTree:
        """What the job's directory holds now, read symlink-safely and bounded; call between
        stages (:meth:`BoxMount.read_submission`).

        Raises:
            TreeTooLarge: it holds more than the bounds allow.
            OSError: it could not be read.
        """
        return self._storage.read_submission(
            max_entries=max_entries, max_bytes=max_bytes, skip=skip
        )

    def write_submission(self, tree: BoxTree) -> None:
        """Fill the job's empty directory with ``tree`` (instead of :meth:`write_files`).

        Raises:
            SandboxError: an entry could not be made.
        """
        self._storage.write_submission(tree)

    @asynccontextmanager
    async def open_stage(
        self,
        spec: StageSpec,
        *,
        stage: str = "stage",
        live: bool = True,
        admission: Admission | None = None,
    ) -> AsyncIterator[Stage]:
        """Start ``spec`` in a fresh sandbox over this box; kill it if still running at the end.

        Args:
            spec: what to run, with its limits.
            stage: names the stage's cgroup (``box-<slot>-<stage>``, reused) and logs.
            live: stream kept output through :meth:`Stage.output` (interactive jobs).
            admission: the stage's place at the stage gate, given back when the stage ends or
                goes idle.

        Raises:
            SandboxError: the cgroup could not be made or the sandbox could not be spawned.
        """
        sandbox = self._sandbox
        await self.wait_released()
        if self.slot in sandbox.quarantined:
            raise SandboxError("the box slot was retired: a stage outlived its cleanup")
        group = sandbox.stage_group(self.slot, stage, spec.limits)
        spawn_spec = SpawnSpec(
            stage=spec,
            box_path=str(self._storage.path),
            uid=self.uid,
            cgroup_procs=tuple(group.procs_files),
        )
        request = SpawnRequest(spec=spawn_spec, slot=self.slot, box_fd=self.root_fd, group=group)
        async with open_supervised_stage(
            spawner=sandbox.spawner,
            request=request,
            live=live,
            release_in=self._releases,
            admission=admission,
        ) as running:
            self._last = running
            yield running
        if running.result is not None and running.result.status is not None:
            logger.debug(
                "box %d %s: %s (%s)",
                self.slot,
                stage,
                running.result.status,
                running.result.message,
            )

    async def wait_released(self) -> None:
        """Wait until the box's last stage's sandbox is gone (and retire the slot if its
        processes outlived the cleanup)."""
        last = self._last
        if last is None:
            await trio.lowlevel.checkpoint()
            return
        await last.wait_released()
        if last.cleanup_failed:
            self._sandbox.quarantine(self.slot)

    async def run_stage(
        self,
        spec: StageSpec,
        stdin: bytes = b"",
        *,
        stage: str = "stage",
        admission: Admission | None = None,
    ) -> StageResult:
        """Run ``spec`` to its end with ``stdin`` as its whole input; its result.

        Raises:
            SandboxError: the cgroup could not be made or the sandbox could not be spawned.
        """
        async with self.open_stage(spec, stage=stage, live=False, admission=admission) as running:
            await running.write(stdin)
            await running.close_stdin()
            return await running.wait()


@attrs.define(eq=False)
class Sandbox:
    """The daemon's sandbox: a spawner, a cgroup backend and the boxes of running jobs."""

    config: DaemonConfig
    spawner: Spawner
    cgroups: CgroupBackend
    info: SandboxInfo
    quarantined: set[int] = attrs.field(factory=set)
    """Box slots whose processes outlived their cleanup: never handed out again."""
    _groups: dict[tuple[int, str], RunGroup] = attrs.field(factory=dict)
    """Each box slot's cgroup per stage kind, made on first use and reused."""

    def stage_group(self, slot: int, stage: str, limits: StageLimits) -> RunGroup:
        """The cgroup of ``stage`` in box ``slot``, reset for a stage with ``limits``.

        A group serves one stage at a time: the slot's previous stage of the kind emptied it.

        Raises:
            SandboxError: the group could not be made or its limits written.
        """
        wanted = CgroupLimits(memory_bytes=limits.memory_bytes, max_processes=limits.max_processes)
        group = self._groups.get((slot, stage))
        if group is None:
            group = self.cgroups.create(f"box-{slot}-{stage}", wanted)
            self._groups[(slot, stage)] = group
        else:
            group.reset(wanted)
        return group

    def forget_roots(self) -> None:
        """Forget prepared roots after a package change (uninstall): the next stages get
        roots built from the packages as they are now."""
        self.spawner.forget_roots()

    def remove_groups(self) -> None:
        """Remove every stage group (the daemon is stopping; none is in use)."""
        for (slot, _), group in sorted(self._groups.items()):
            if slot in self.quarantined:
                continue
            try:
                group.remove()
            except (OSError, SandboxError) as exc:
                logger.warning("cgroup %s kept: %s", group.name, exc)
        self._groups.clear()

    def quarantine(self, slot: int) -> None:
        """Retire ``slot``: a stage of it could not be cleaned up, so its uid may still run."""
        if slot not in self.quarantined:
            self.quarantined.add(slot)
            logger.error("box %d: processes outlived cleanup; slot retired until restart", slot)

    @asynccontextmanager
    async def open_box(self, slot: int) -> AsyncIterator[Box]:
        """Mount box ``slot`` (uid ``box_uid_base + slot``); unmount it when the block ends.

        Raises:
            SandboxError: the box could not be mounted.
        """
        if not 0 <= slot < self.config.max_concurrent_jobs:
            raise SandboxError("box slot out of range")
        async with open_box(self.config, slot, self.config.box_uid_base + slot) as storage:
            box: Box | None = None
            try:
                async with trio.open_nursery() as releases:
                    box = Box(sandbox=self, storage=storage, releases=releases)
                    yield box
            finally:
                if box is not None:
                    with trio.CancelScope(shield=True):
                        await box.wait_released()


def jobs_group_name(config: DaemonConfig) -> str:
    """The cgroup (per hierarchy) that holds this daemon's job groups.

    Hierarchies such as v1 ``pids`` may be shared by every process of the host, so two
    daemons (each with its own socket) must not share, or clean up, each other's groups.
    """
    if config.socket == attrs.fields(type(config)).socket.default:
        return "pistond-jobs"
    digest = hashlib.sha256(str(config.socket).encode()).hexdigest()[:12]
    return f"pistond-jobs-{digest}"


@asynccontextmanager
async def open_sandbox(config: DaemonConfig, spawner: RawSpawner) -> AsyncIterator[Sandbox]:
    """Detect cgroups, clean what a previous daemon left (groups, boxes), and serve boxes.

    Args:
        config: the daemon configuration.
        spawner: the started launcher or fork server (``spawners.start_spawner``); the caller
            owns it and closes it after this block.

    Raises:
        SandboxError: no way to build sandboxes was found.
    """
    await trio.lowlevel.checkpoint()
    backend = detect(config, jobs_group=jobs_group_name(config))
    stale_groups = backend.cleanup_stale()
    stale_boxes = cleanup_stale_boxes(config)
    if stale_groups or stale_boxes:
        logger.info("cleaned %d stale cgroups and %d stale boxes", stale_groups, stale_boxes)
    box_uids = tuple(range(config.box_uid_base, config.box_uid_base + config.max_concurrent_jobs))
    async with trio.open_nursery() as background:
        wrapped = wrap_spawner(spawner, nursery=background, box_uids=box_uids)
        info = SandboxInfo(
            cgroup=backend.kind,
            # Both spawners get the compiled filter at start and do not run without it.
            seccomp=True,
            network=not config.disable_networking,
        )
        sandbox = Sandbox(config=config, spawner=wrapped, cgroups=backend, info=info)
        logger.info("sandboxes are started by the %s spawner", wrapped.kind)
        try:
            yield sandbox
        finally:
            background.cancel_scope.cancel()
            wrapped.close()
            sandbox.remove_groups()
            _remove_jobs_dirs(backend)


def _remove_jobs_dirs(backend: CgroupBackend) -> None:
    """Remove this daemon's (empty) job cgroups at exit; a busy one waits for the next start."""
    for directory in reversed(backend.jobs_dirs):
        try:
            os.rmdir(directory)
        except OSError as exc:
            logger.debug("job cgroup %s kept: %s", directory.name, exc.strerror)


if TYPE_CHECKING:
    from pistond.sandbox.contract import SandboxLike

    def _satisfies_the_contract(sandbox: Sandbox) -> SandboxLike:
        """mypy checks that the sandbox offers what the job manager uses of one."""
        return sandbox
