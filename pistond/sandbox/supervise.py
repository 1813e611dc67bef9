"""Run one sandboxed stage: spawn, feed stdin, capture output, enforce limits, kill, verdict.

The shape is trio's ``_run_process``: the sandbox is spawned outside the supervising task, so
spawn errors reach the caller; stdin, output readers, the CPU poller and the waiter run inside
a nursery under ``move_on_after(wall)``; whatever happens (limit, cancellation, error), a
``finally`` kills the sandbox (SIGKILL to its PID 1 by pidfd, plus the cgroup kill) in a
shielded scope with its own deadline, always awaits the reap and waits for the cgroup to empty
(the group itself is kept: it serves the slot's next stage). The program's exit and EOF on its
pipes are separate events: once PID 1 reports the exit, leftovers are killed and the pipes get
a short drain, never a wait for every writer.

Short exit path: the native launcher's PID 1 reports the exit only once every process of the
sandbox is gone (a ``complete`` exit), so the verdict is made from that one record and the
cgroup's readings at once; PID 1's own exit is awaited afterwards, by pidfd, not by polling.
"""

from __future__ import annotations

import logging
import math
import os
from contextlib import asynccontextmanager
from enum import Enum
from typing import TYPE_CHECKING, Final, Protocol

import attrs
import trio

from pistond.errors import SandboxError
from pistond.models import StageResult, StageStatus
from pistond.sandbox.output import OutputCapture, StreamName
from pistond.signals import signal_name

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from pistond.sandbox.cgroups import RunGroup
    from pistond.sandbox.contract import Admission
    from pistond.sandbox.spawners import SpawnRequest

logger = logging.getLogger(__name__)

CPU_POLL_INTERVAL: Final = 0.015
"""Seconds between two reads of the cgroup's CPU time, at the most."""
MIN_CPU_POLL_INTERVAL: Final = 0.001
"""Seconds between two reads at the least (near the CPU limit)."""
IDLE_SHARE: Final = 0.1
"""A stage using less than this share of one CPU over :data:`IDLE_POLLS` polls is idle."""
IDLE_POLLS: Final = 7
"""Polls (about 0.1 s) of low CPU after which an idle stage gives its admission back."""
DRAIN_TIMEOUT: Final = 0.1
"""Seconds the pipes get to reach EOF after PID 1 exited."""
CLEANUP_TIMEOUT: Final = 5.0
"""Seconds the shielded kill, reap and cgroup removal may take before it is logged as stuck."""
EMPTY_POLL_INTERVAL: Final = 0.001


class SandboxExitLike(Protocol):
    """What the fork server reports once PID 1 of a sandbox is gone."""

    @property
    def program_status(self) -> int | None:
        """Raw wait status of the program; None if PID 1 died before reporting."""

    @property
    def setup_error(self) -> str | None:
        """Why the sandbox could not be built, if it could not."""

    @property
    def complete(self) -> bool:
        """Every process of the sandbox was gone when the exit was reported."""


class SandboxProcessLike(Protocol):
    """A spawned sandbox (``spawn.SandboxProcess`` or ``launch.LaunchedSandbox``)."""

    @property
    def pid(self) -> int:
        """Host pid of the sandbox's PID 1."""

    async def wait(self) -> SandboxExitLike:
        """Wait until PID 1 reported the program's exit (or is gone)."""

    async def wait_closed(self) -> bool:
        """Wait until PID 1 is gone; whether its network namespace may be reused."""

    def kill(self) -> None:
        """SIGKILL PID 1 through its pidfd, ending the whole pid namespace; idempotent."""

    def signal_program(self, signum: int) -> None:
        """Have PID 1 forward ``signum`` to the program's process group."""

    def close(self) -> None:
        """Release the pidfd and the report channel."""


class SpawnerLike(Protocol):
    """What starts sandboxes (``pistond.sandbox.spawners.Spawner``)."""

    async def spawn(
        self, request: SpawnRequest, *, stdin: int, stdout: int, stderr: int
    ) -> SandboxProcessLike:
        """Start a sandbox for ``request`` with the given stdio fds."""


class KillReason(Enum):
    """Why the supervisor killed a sandbox."""

    STDOUT_LIMIT = "stdout"
    STDERR_LIMIT = "stderr"
    CPU_TIME = "cpu"
    WALL_TIME = "wall"
    REQUESTED = "requested"
    """``Stage.kill()``: the client asked (interactive jobs) or the stage was abandoned."""


_LIMIT_VERDICTS: Final = {
    KillReason.STDOUT_LIMIT: (StageStatus.STDOUT_LIMIT, "stdout length exceeded"),
    KillReason.STDERR_LIMIT: (StageStatus.STDERR_LIMIT, "stderr length exceeded"),
    KillReason.CPU_TIME: (StageStatus.TIMEOUT, "Time limit exceeded"),
    KillReason.WALL_TIME: (StageStatus.TIMEOUT, "Time limit exceeded (wall clock)"),
}


@attrs.frozen
class Measurements:
    """What the cgroup and the clock said about a finished stage."""

    cpu_time_ns: int
    memory_bytes: int
    oom_killed: bool
    wall_time_s: float


def verdict(
    *,
    capture: OutputCapture,
    sandbox_exit: SandboxExitLike | None,
    killed_for: KillReason | None,
    measurements: Measurements,
    cpu_limit_ms: int,
) -> StageResult:
    """The PROTOCOL.md ``Stage`` of a finished stage.

    Precedence: a sandbox setup error (XX); the first limit the supervisor killed for (OL, EL,
    TO); an OOM kill in a stage that did not exit 0 (ML); CPU time over the limit (TO); a
    requested kill (SG SIGKILL); then the program's own exit (nil, RE, SG).
    """
    text = capture.text()
    status_code: int | None = None
    signal: str | None = None
    status: StageStatus | None = None
    message: str | None = None
    raw = sandbox_exit.program_status if sandbox_exit is not None else None
    exited_zero = raw is not None and os.WIFEXITED(raw) and os.WEXITSTATUS(raw) == 0
    cpu_over = measurements.cpu_time_ns > cpu_limit_ms * 1_000_000
    if sandbox_exit is not None and sandbox_exit.setup_error is not None:
        status, message = StageStatus.INTERNAL_ERROR, sandbox_exit.setup_error
    elif killed_for in _LIMIT_VERDICTS:
        status, message = _LIMIT_VERDICTS[killed_for]
        signal = "SIGKILL"
    elif measurements.oom_killed and not exited_zero:
        status, message, signal = StageStatus.MEMORY_LIMIT, "Memory limit exceeded", "SIGKILL"
    elif cpu_over and not exited_zero:
        status, message = _LIMIT_VERDICTS[KillReason.CPU_TIME]
        signal = "SIGKILL"
    elif killed_for is KillReason.REQUESTED:
        status, message, signal = StageStatus.SIGNALED, "Caught fatal signal 9", "SIGKILL"
    elif raw is None:
        status, message = StageStatus.INTERNAL_ERROR, "sandbox ended without reporting an exit"
    elif os.WIFSIGNALED(raw):
        number = os.WTERMSIG(raw)
        status, message = StageStatus.SIGNALED, f"Caught fatal signal {number}"
        signal = signal_name(number)
    elif os.WIFEXITED(raw):
        status_code = os.WEXITSTATUS(raw)
        if status_code != 0:
            status, message = StageStatus.RUNTIME_ERROR, f"Exited with error status {status_code}"
    else:
        status, message = StageStatus.INTERNAL_ERROR, "sandbox reported an unknown exit status"
    return StageResult(
        stdout=text.stdout,
        stderr=text.stderr,
        output=text.output,
        code=status_code,
        signal=signal,
        status=status,
        message=message,
        cpu_time=measurements.cpu_time_ns // 1_000_000,
        wall_time=round(measurements.wall_time_s * 1000),
        memory=measurements.memory_bytes,
    )


@attrs.define(eq=False)
class SupervisedStage:
    """A running stage: write its stdin, signal or kill it, read live output, wait for the result.

    Obtained from :func:`open_supervised_stage`; the supervising task runs in that context's
    nursery.
    """

    process: SandboxProcessLike
    group: RunGroup
    capture: OutputCapture
    wall_limit_ms: int
    cpu_limit_ms: int
    _stdin: trio.lowlevel.FdStream | None
    _stdout: trio.lowlevel.FdStream
    _stderr: trio.lowlevel.FdStream
    _live: trio.MemorySendChannel[tuple[StreamName, bytes]] | None
    _live_receive: trio.MemoryReceiveChannel[tuple[StreamName, bytes]] | None
    _started_at: float
    _stdin_lock: trio.Lock = attrs.field(factory=trio.Lock)
    _done: trio.Event = attrs.field(factory=trio.Event)
    """The result is known (or the stage failed to produce one)."""
    _released: trio.Event = attrs.field(factory=trio.Event)
    """The sandbox is gone, its group empty and every descriptor closed."""
    _readers_done: trio.Event = attrs.field(factory=trio.Event)
    _readers_left: int = 2
    admission: Admission | None = None
    """The stage's place at the stage gate: given back at the result, or once idle."""
    _exit: SandboxExitLike | None = None
    _exit_at: float | None = None
    _killed_for: KillReason | None = None
    _result: StageResult | None = None
    cleanup_failed: bool = False

    def __attrs_post_init__(self) -> None:
        self.capture.on_overflow = self._on_overflow
        if self._live is not None:
            self.capture.on_output = self._on_output

    """The stage's processes or cgroup outlived the cleanup deadline: its uid is not reusable."""
    network_clean: bool = False
    """PID 1 reported the network namespace clean for reuse (native launcher)."""

    async def write(self, data: bytes) -> None:
        """Write to the program's stdin; silently dropped once stdin is closed or unread."""
        async with self._stdin_lock:
            if self._stdin is None:
                await trio.lowlevel.checkpoint()
                return
            try:
                await self._stdin.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                await self._close_stdin_locked()

    async def close_stdin(self) -> None:
        """Close the program's stdin (EOF); idempotent."""
        async with self._stdin_lock:
            await self._close_stdin_locked()

    async def _close_stdin_locked(self) -> None:
        stdin, self._stdin = self._stdin, None
        if stdin is not None:
            await stdin.aclose()
        else:
            await trio.lowlevel.checkpoint()

    def signal(self, signum: int) -> None:
        """Deliver ``signum`` to the program's process group (through PID 1)."""
        if not self._done.is_set() and self._exit is None:
            self.process.signal_program(signum)

    def kill(self) -> None:
        """Kill the sandbox now: SG SIGKILL, unless it already ended or hit a limit."""
        if self._exit is None:
            self._kill_for(KillReason.REQUESTED)

    async def output(self) -> AsyncIterator[tuple[StreamName, bytes]]:
        """Kept output chunks as they arrive, ``("stdout" | "stderr", bytes)``, until the end."""
        if self._live_receive is None:
            raise RuntimeError("this stage was opened without live output")
        async with self._live_receive.clone() as receive:
            async for item in receive:
                yield item

    async def wait(self) -> StageResult:
        """Wait for the stage to end; its result (the sandbox may still be going away)."""
        await self._done.wait()
        if self._result is None:
            raise SandboxError("the stage was cancelled before it finished")
        return self._result

    async def wait_done(self) -> None:
        """Wait until the result is known, or the stage failed to produce one."""
        await self._done.wait()

    async def wait_released(self) -> None:
        """Wait until the sandbox is gone, its group empty and its descriptors closed."""
        await self._released.wait()

    @property
    def result(self) -> StageResult | None:
        """The result, once the stage has ended."""
        return self._result

    def _kill_for(self, reason: KillReason) -> None:
        if self._killed_for is None and not self._done.is_set():
            self._killed_for = reason
            logger.debug("sandbox pid %d: killing (%s)", self.process.pid, reason.value)
        self._kill_now()

    def _kill_now(self) -> None:
        try:
            self.process.kill()
        except OSError as exc:
            logger.debug("sandbox pid %d: pidfd kill failed: %s", self.process.pid, exc)
        try:
            self.group.kill()
        except (OSError, SandboxError):
            logger.warning("sandbox pid %d: cgroup kill failed", self.process.pid, exc_info=True)

    def _on_overflow(self, stream: StreamName) -> None:
        self._kill_for(KillReason.STDOUT_LIMIT if stream == "stdout" else KillReason.STDERR_LIMIT)

    async def _on_output(self, stream: StreamName, data: bytes) -> None:
        if self._live is not None:
            self._live.send_nowait((stream, data))
        await trio.lowlevel.checkpoint()

    async def _read(self, stream: StreamName, pipe: trio.lowlevel.FdStream) -> None:
        try:
            await self.capture.pump(stream, pipe)
        finally:
            self._readers_left -= 1
            if self._readers_left == 0:
                self._readers_done.set()

    async def _poll_cpu(self) -> None:
        """Kill at the CPU limit; give the admission back once the stage has gone idle.

        The next read comes after a period, or sooner when the stage's current rate of use
        (CPUs busy) reaches the limit before that: a stage burning every core is killed
        within about a millisecond of its limit, not a whole period of every core past it.
        """
        limit_ns = self.cpu_limit_ms * 1_000_000
        previous, quiet = 0, 0
        interval = CPU_POLL_INTERVAL
        last = trio.current_time()
        while True:
            await trio.sleep(interval)
            used = self.group.cpu_time_ns()
            if used > limit_ns:
                self._kill_for(KillReason.CPU_TIME)
                return
            now = trio.current_time()
            elapsed_ns = max((now - last) * 1e9, 1.0)
            spent, previous, last = used - previous, used, now
            quiet = quiet + 1 if spent < elapsed_ns * IDLE_SHARE else 0
            if quiet >= IDLE_POLLS and self.admission is not None:
                self.admission.release()
            due = (limit_ns - used) * elapsed_ns / spent / 1e9 if spent > 0 else CPU_POLL_INTERVAL
            interval = min(CPU_POLL_INTERVAL, max(MIN_CPU_POLL_INTERVAL, due))

    async def _wait_exit(self) -> None:
        self._exit = await self.process.wait()
        self._exit_at = trio.current_time()

    async def supervise(self) -> None:
        """Run the stage to its end; always kill, reap and empty the cgroup before returning.

        The result is published (:meth:`wait` returns) before the release: PID 1's exit, which
        tears its namespaces down, and the group's emptiness are awaited after it.
        """
        try:
            with trio.move_on_after(self.wall_limit_ms / 1000) as wall:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._read, "stdout", self._stdout)
                    nursery.start_soon(self._read, "stderr", self._stderr)
                    nursery.start_soon(self._poll_cpu)
                    await self._wait_exit()
                    # PID 1 is gone, and with it every process of its pid namespace: give the
                    # pipes a short drain, never a wait for every writer.
                    with trio.move_on_after(DRAIN_TIMEOUT):
                        await self._readers_done.wait()
                    nursery.cancel_scope.cancel()
            if wall.cancelled_caught and self._exit is None:
                self._kill_for(KillReason.WALL_TIME)
        finally:
            with trio.CancelScope(shield=True) as cleanup:
                cleanup.deadline = trio.current_time() + CLEANUP_TIMEOUT
                try:
                    await self._finish()
                finally:
                    if self.admission is not None:
                        self.admission.release()
                    self._done.set()
                    await self._release()
            if cleanup.cancelled_caught:
                self.cleanup_failed = True
                logger.error("sandbox pid %d: cleanup did not finish in time", self.process.pid)
            self._done.set()
            self._released.set()

    async def _finish(self) -> None:
        """Kill if needed, wait for the exit, measure; set the result."""
        if self._exit is None:
            self._kill_now()
            await self._wait_exit()
        assert self._exit is not None
        if not self._exit.complete:
            await self._wait_group_empty()
        wall = (self._exit_at or trio.current_time()) - self._started_at
        measurements = Measurements(
            cpu_time_ns=self.group.cpu_time_ns(),
            memory_bytes=self.group.memory_peak(),
            oom_killed=self.group.oom_killed(),
            wall_time_s=wall,
        )
        self._result = verdict(
            capture=self.capture,
            sandbox_exit=self._exit,
            killed_for=self._killed_for,
            measurements=measurements,
            cpu_limit_ms=self.cpu_limit_ms,
        )

    async def _release(self) -> None:
        """PID 1 is exiting (or was killed): wait for it, whose exit tears the namespaces
        down, and for the group to be empty (it serves the slot's next stage); close fds."""
        try:
            if self._exit is None:
                self._kill_now()
            self.network_clean = await self.process.wait_closed()
            await self._wait_group_empty()
        finally:
            self.process.close()
            for stream in (self._stdin, self._stdout, self._stderr):
                if stream is not None:
                    stream.close()
            self._stdin = None
            if self._live is not None:
                self._live.close()

    async def _wait_group_empty(self) -> None:
        while self.group.populated():
            self.group.kill()
            await trio.sleep(EMPTY_POLL_INTERVAL)


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


@asynccontextmanager
async def open_supervised_stage(
    *,
    spawner: SpawnerLike,
    request: SpawnRequest,
    live: bool = False,
    release_in: trio.Nursery | None = None,
    admission: Admission | None = None,
) -> AsyncIterator[SupervisedStage]:
    """Spawn ``request`` in its group and supervise it until the block ends.

    The group is emptied when the stage ends, also when the spawn fails. Leaving the block
    kills a stage still running and waits for its result, and for its release (PID 1 gone,
    group empty) unless ``release_in`` is given: the release then finishes in that nursery
    (:meth:`SupervisedStage.wait_released` says when).

    Args:
        spawner: the launcher or the fork server.
        request: what to run; its group is reset for it, and ``request.spec.cgroup_procs``
            names the group's procs files.
        live: whether :meth:`SupervisedStage.output` streams chunks (interactive jobs).
        release_in: a nursery that outlives the block, to supervise the stage in.
        admission: the stage's place at the stage gate (given back at its result or once
            the stage has gone idle).

    Raises:
        SandboxError: the pipes could not be made or the sandbox could not be spawned.
    """
    group = request.group
    limits = request.spec.stage.limits
    parent_fds: list[int] = []
    child_fds: list[int] = []
    try:
        stdin_r, stdin_w = os.pipe2(os.O_CLOEXEC)
        child_fds.append(stdin_r)
        parent_fds.append(stdin_w)
        stdout_r, stdout_w = os.pipe2(os.O_CLOEXEC)
        parent_fds.append(stdout_r)
        child_fds.append(stdout_w)
        stderr_r, stderr_w = os.pipe2(os.O_CLOEXEC)
        parent_fds.append(stderr_r)
        child_fds.append(stderr_w)
        process = await spawner.spawn(request, stdin=stdin_r, stdout=stdout_w, stderr=stderr_w)
    except BaseException as exc:
        _close_all(parent_fds)
        with trio.CancelScope(shield=True):
            await _empty_group(group)
        if isinstance(exc, OSError):
            raise SandboxError("the sandbox could not be spawned") from exc
        raise
    finally:
        _close_all(child_fds)
    live_send: trio.MemorySendChannel[tuple[StreamName, bytes]] | None = None
    live_receive: trio.MemoryReceiveChannel[tuple[StreamName, bytes]] | None = None
    if live:
        # Unbounded, yet bounded in bytes: only kept chunks enter it, at most 2 caps in all.
        live_send, live_receive = trio.open_memory_channel[tuple[StreamName, bytes]](math.inf)
    stage = SupervisedStage(
        process=process,
        group=group,
        capture=OutputCapture(limit=limits.output_max_size),
        wall_limit_ms=limits.wall_time_ms,
        cpu_limit_ms=limits.cpu_time_ms,
        stdin=trio.lowlevel.FdStream(stdin_w),
        stdout=trio.lowlevel.FdStream(stdout_r),
        stderr=trio.lowlevel.FdStream(stderr_r),
        live=live_send,
        live_receive=live_receive,
        started_at=trio.current_time(),
        admission=admission,
    )
    if release_in is not None:
        release_in.start_soon(stage.supervise)
        try:
            yield stage
        finally:
            if stage.result is None:
                stage.kill()
            with trio.CancelScope(shield=True):
                await stage.wait_done()
        return
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stage.supervise)
        try:
            yield stage
        finally:
            if stage.result is None:
                stage.kill()


async def _empty_group(group: RunGroup) -> None:
    """Empty the group of a stage that never started (a failed spawn may have left PID 1)."""
    with trio.move_on_after(CLEANUP_TIMEOUT):
        while group.populated():
            group.kill()
            await trio.sleep(EMPTY_POLL_INTERVAL)
