"""The two ways a stage's sandbox is started, behind one interface: native launcher or fork server.

- :class:`LauncherSpawner`: the native launcher (:mod:`pistond.sandbox.launch`), the default.
  It adds what the launcher needs besides the spec: the stage's prepared root
  (:mod:`pistond.sandbox.templates`), the box slot's network namespace
  (:mod:`pistond.sandbox.netpool`), and the stage group's cgroup descriptors.
- :class:`ForkServerSpawner`: the Python fork server (:mod:`pistond.sandbox.spawn`), used when
  the launcher was not built (no C compiler at install time) or cannot run here.

:func:`start_spawner` picks one when the daemon starts (before trio), and says which.
"""

from __future__ import annotations

import logging
import os
from functools import partial
from typing import TYPE_CHECKING, Protocol

import attrs
import trio

from pistond.errors import SandboxError
from pistond.sandbox import launch
from pistond.sandbox.launch import Launcher, NetworkUnavailable, StageHandles
from pistond.sandbox.namespaces import SandboxExit
from pistond.sandbox.netpool import NetworkPool
from pistond.sandbox.recipe import TIMING_ENV
from pistond.sandbox.spawn import ForkServer
from pistond.sandbox.spec import root_plan
from pistond.sandbox.templates import RootUnavailable, Templates

if TYPE_CHECKING:
    from pistond.sandbox.cgroups import RunGroup
    from pistond.sandbox.spec import SpawnSpec
    from pistond.sandbox.supervise import SandboxProcessLike

logger = logging.getLogger(__name__)


@attrs.frozen
class SpawnRequest:
    """One stage to start: its spec and what the daemon holds for it."""

    spec: SpawnSpec
    slot: int
    box_fd: int
    """The box's root directory (its mount is cloned for the sandbox)."""
    group: RunGroup
    """The stage's cgroup, reset for it."""


class Spawner(Protocol):
    """Starts sandboxes (:class:`LauncherSpawner` or :class:`ForkServerSpawner`)."""

    @property
    def kind(self) -> str:
        """``"native"`` or ``"python"``, as the daemon's start-up log says."""

    async def spawn(
        self, request: SpawnRequest, *, stdin: int, stdout: int, stderr: int
    ) -> SandboxProcessLike:
        """Start ``request`` with the given stdio descriptors (the caller keeps them)."""

    def forget_roots(self) -> None:
        """Drop the roots prepared ahead, so stages started from now on see package changes."""

    def close(self) -> None:
        """Release what the spawner holds besides its process (which its owner stops)."""


RawSpawner = Launcher | ForkServer
"""What :func:`start_spawner` starts before trio: wrapped by :func:`wrap_spawner` inside it."""


@attrs.define(eq=False)
class ForkServerSpawner:
    """The Python fork server (the fallback)."""

    fork_server: ForkServer
    kind: str = "python"

    async def spawn(
        self, request: SpawnRequest, *, stdin: int, stdout: int, stderr: int
    ) -> SandboxProcessLike:
        """Have the fork server start ``request.spec`` (it joins the group by path)."""
        return await self.fork_server.spawn(request.spec, stdin=stdin, stdout=stdout, stderr=stderr)

    def forget_roots(self) -> None:
        """Nothing to drop here: each root the fork server prepares ahead serves one sandbox
        and expires within its short maximum age."""

    def close(self) -> None:
        """Nothing to release: the fork server's owner stops it."""


@attrs.define(eq=False)
class LauncherSpawner:
    """The native launcher with its templates and network namespaces."""

    launcher: Launcher
    templates: Templates
    network: NetworkPool
    box_uids: tuple[int, ...]
    """Every box slot's uid (the host view's passwd names them all)."""
    kind: str = "native"

    async def spawn(
        self, request: SpawnRequest, *, stdin: int, stdout: int, stderr: int
    ) -> SandboxProcessLike:
        """Start ``request`` through the launcher.

        Raises:
            SandboxError: the root, the network namespace or the sandbox could not be made.
        """
        spec = request.spec
        try:
            template = await self.templates.get(root_plan(spec, self.box_uids, shared=True))
        except RootUnavailable as exc:
            # As on the fork server's path, a root that cannot be built is the stage's setup
            # error (XX, naming the mount), not a failure of the spawner.
            return FailedSandbox(setup_error=f"mounts: {exc}")
        try:
            netns = -1 if spec.stage.network else await self.network.acquire(request.slot)
        except NetworkUnavailable as exc:
            return FailedSandbox(setup_error=str(exc))
        try:
            group = request.group.handles()
            handles = StageHandles(
                box=request.box_fd,
                mount_namespace=template,
                network_namespace=netns,
                cgroup2=group.cgroup2,
                cgroup_v1=group.tasks,
            )
            process = await self.launcher.spawn(
                spec, handles, stdin=stdin, stdout=stdout, stderr=stderr
            )
        except BaseException:
            if netns >= 0:
                self.network.release(request.slot, netns, clean=False)
            raise
        if netns >= 0:
            process.on_closed = partial(self.network.release, request.slot, netns)
        return process

    def forget_roots(self) -> None:
        """Drop every template (a package was uninstalled: a template binds its directory)."""
        self.templates.forget()

    def close(self) -> None:
        """Drop the templates and network namespaces (the launcher's owner stops it)."""
        self.templates.close()
        self.network.close()


@attrs.define(eq=False)
class FailedSandbox:
    """A sandbox that could not be set up: it ended before it began, with ``setup_error``."""

    setup_error: str
    pid: int = 0

    async def wait(self) -> SandboxExit:
        """The setup error, at once."""
        await trio.lowlevel.checkpoint()
        return SandboxExit(program_status=None, setup_error=self.setup_error, complete=True)

    async def wait_closed(self) -> bool:
        """Nothing to wait for."""
        await trio.lowlevel.checkpoint()
        return False

    def kill(self) -> None:
        """Nothing to kill."""

    def signal_program(self, signum: int) -> None:
        """Nothing to signal."""

    def close(self) -> None:
        """Nothing to close."""


def start_spawner() -> RawSpawner:
    """Start the native launcher if it was built and runs here, else the Python fork server.

    Call before ``trio.run``. The fallback is logged in one line. ``PISTOND_SANDBOX_TIMING=1``
    in the environment turns timing mode on (``bench/sandbox_overhead.py --breakdown``).

    Raises:
        SandboxError: neither could be started.
    """
    timing = os.environ.get(TIMING_ENV) == "1"
    if launch.find_executable() is None:
        logger.warning(
            "native launcher not built (no C compiler at install?): using the Python fork server"
        )
    else:
        try:
            return launch.start_built(timing=timing)
        except SandboxError as exc:
            logger.warning("native launcher unusable (%s): using the Python fork server", exc)
    return ForkServer.start()


def wrap_spawner(raw: RawSpawner, *, nursery: trio.Nursery, box_uids: tuple[int, ...]) -> Spawner:
    """The spawner interface over a started launcher or fork server."""
    if isinstance(raw, Launcher):
        return LauncherSpawner(
            launcher=raw,
            templates=Templates(nursery=nursery),
            network=NetworkPool(make=raw.network_namespace),
            box_uids=box_uids,
        )
    return ForkServerSpawner(fork_server=raw)


__all__ = [
    "ForkServerSpawner",
    "LauncherSpawner",
    "RawSpawner",
    "SpawnRequest",
    "Spawner",
    "start_spawner",
    "wrap_spawner",
]
