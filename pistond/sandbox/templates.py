"""Prepared roots for the native launcher: one mount namespace per root plan, shared by copy.

A template is a mount namespace holding nothing but a sandbox's static root (the runtime's
root filesystem or the host view, read-only, with its binds and ``/dev``), built once by a
short-lived builder process (:mod:`pistond.sandbox.rootbuilder`). Each sandbox's PID 1 enters
it and unshares a private copy (a handful of mounts), then adds its box, ``/tmp``,
``/dev/shm`` and ``/proc``: no pivot and no detach of the host's tree per stage, and no builder
per stage.

Templates are kept at most ``max_age`` seconds, so changes of host files bound into the host
view (``/etc/ld.so.cache``, ``/etc/localtime``, ...) reach new sandboxes within that time; one
that is getting old is rebuilt in the background while it still serves. A failed build is
remembered for ``retry_after`` seconds, so a broken root costs one builder, not one per
request. :meth:`Templates.forget` drops the templates of a runtime root at once (uninstall).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
from typing import TYPE_CHECKING, Final

import attrs
import trio

from pistond.errors import SandboxError
from pistond.sandbox import rootbuilder
from pistond.sandbox.forkserver import light_command
from pistond.sandbox.spec import plan_to_wire

if TYPE_CHECKING:
    from pistond.sandbox.spec import RootPlan

logger = logging.getLogger(__name__)

MAX_AGE: Final = 30.0
"""Seconds a template serves new sandboxes."""
REFRESH_AT: Final = 0.8
"""Fraction of the max age after which a used template is rebuilt in the background."""
RETRY_AFTER: Final = 2.0
"""Seconds a failed build is remembered."""
BUILD_TIMEOUT: Final = 30.0


class RootUnavailable(SandboxError):
    """Raised by :meth:`Templates.get` when the plan's root cannot be built; the text names the
    failed step by its sandbox path (``bind /box: No such file or directory``)."""


@attrs.define(eq=False)
class _Template:
    fd: int
    """The mount namespace."""
    made_at: float
    refreshing: bool = False


@attrs.define(eq=False)
class _Build:
    done: trio.Event = attrs.field(factory=trio.Event)
    template: _Template | None = None
    error: str | None = None


@attrs.define(eq=False)
class Templates:
    """The daemon's templates, by root plan; :meth:`get` returns one, building it if needed.

    Args:
        nursery: where background refreshes run (the sandbox's own nursery).
    """

    nursery: trio.Nursery
    max_age: float = MAX_AGE
    retry_after: float = RETRY_AFTER
    _ready: dict[RootPlan, _Template] = attrs.field(factory=dict)
    _building: dict[RootPlan, _Build] = attrs.field(factory=dict)
    _failed: dict[RootPlan, tuple[float, str]] = attrs.field(factory=dict)
    builds: int = 0
    """Templates built so far (for tests and statistics)."""

    async def get(self, plan: RootPlan) -> int:
        """A mount namespace for ``plan`` (the descriptor stays owned by the cache: use it now).

        Raises:
            RootUnavailable: the root could not be built (the message holds no host paths).
        """
        now = trio.current_time()
        template = self._ready.get(plan)
        if template is not None:
            age = now - template.made_at
            if age < self.max_age:
                if age > self.max_age * REFRESH_AT and not template.refreshing:
                    template.refreshing = True
                    self.nursery.start_soon(self._refresh, plan)
                return template.fd
            self._drop(plan)
        failed = self._failed.get(plan)
        if failed is not None:
            if now - failed[0] < self.retry_after:
                raise RootUnavailable(failed[1])
            del self._failed[plan]
        build = self._building.get(plan)
        if build is None:
            build = self._building[plan] = _Build()
            self.nursery.start_soon(self._build, plan, build)
        await build.done.wait()
        if build.template is None:
            raise RootUnavailable(build.error or "the root could not be built")
        return build.template.fd

    def forget(self, root_path: str | None = None) -> None:
        """Drop the templates of the runtime root at ``root_path`` (None: all of them)."""
        for plan in [p for p in self._ready if root_path is None or p.root.path == root_path]:
            self._drop(plan)
        for plan in [p for p in self._failed if root_path is None or p.root.path == root_path]:
            del self._failed[plan]

    def close(self) -> None:
        """Drop every template."""
        self.forget()

    def _drop(self, plan: RootPlan) -> None:
        template = self._ready.pop(plan, None)
        if template is not None:
            os.close(template.fd)

    async def _refresh(self, plan: RootPlan) -> None:
        build = self._building.get(plan)
        if build is None:
            build = self._building[plan] = _Build()
            await self._build(plan, build)

    async def _build(self, plan: RootPlan, build: _Build) -> None:
        try:
            with trio.move_on_after(BUILD_TIMEOUT) as scope:
                fd = await _build_namespace(plan)
            if scope.cancelled_caught:
                raise SandboxError("building the root timed out")
        except SandboxError as exc:
            build.error = str(exc)
            self._failed[plan] = (trio.current_time(), build.error)
            logger.warning("sandbox root not built: %s", build.error)
        else:
            self.builds += 1
            self._drop(plan)
            build.template = self._ready[plan] = _Template(fd=fd, made_at=trio.current_time())
        finally:
            self._building.pop(plan, None)
            build.done.set()


async def _build_namespace(plan: RootPlan) -> int:
    """Run a builder for ``plan`` and open its mount namespace.

    Raises:
        SandboxError: the builder failed; its message names the step.
    """
    command = light_command(sys.executable, "pistond.sandbox.rootbuilder")
    process = await trio.lowlevel.open_process(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd="/", env={}
    )
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        await process.stdin.send_all(json.dumps(plan_to_wire(plan)).encode() + b"\n")
        answer = b""
        while chunk := await process.stdout.receive_some(4096):
            answer += chunk
        if answer != rootbuilder.READY:
            reason = answer.removeprefix(rootbuilder.FAILED).decode("utf-8", "replace")
            raise SandboxError(reason or "the root builder failed")
        # The builder waits for EOF on its stdin and is not reaped: the pid is its own.
        try:
            return os.open(f"/proc/{process.pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise SandboxError(f"root builder: {exc.strerror}") from None
    finally:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await process.stdin.aclose()
        with trio.CancelScope(shield=True):
            await process.wait()
