"""An unprivileged double of :mod:`pistond.sandbox`: same interface, runs nothing.

Stages return scripted results, so the job manager, the RPC API and the gateway can be tested
without root, namespaces or cgroups::

    sandbox = FakeSandbox()
    sandbox.script(FakeStage(result=stage_result(stdout="hi\\n")))
    async with sandbox.open_box(0) as box:
        box.write_files(files)
        result = await box.run_stage(spec, stdin=b"")
    assert sandbox.calls[0].spec is spec

A stage with no script left gets ``sandbox.default`` (by default an empty clean exit). With
``echo=True`` an interactive stage sends back on stdout whatever is written to it (capped like
the real one) and ends when stdin is closed.
"""

from __future__ import annotations

import math
from collections import deque
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Literal

import attrs
import trio

from pistond.errors import SandboxError
from pistond.models import SandboxInfo, StageResult, StageStatus
from pistond.sandbox.hostfs import BoxTree, EntryKind, TreeEntry, TreeTooLarge, split_name

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping, Sequence

    from pistond.models import SourceFile
    from pistond.sandbox.contract import Admission, SandboxLike
    from pistond.sandbox.spec import StageSpec

StreamName = Literal["stdout", "stderr"]

__all__ = ["FakeBox", "FakeRunningStage", "FakeSandbox", "FakeStage", "StageCall", "stage_result"]


def stage_result(
    *,
    stdout: str = "",
    stderr: str = "",
    code: int | None = 0,
    signal: str | None = None,
    status: StageStatus | None = None,
    message: str | None = None,
    cpu_time: int = 1,
    wall_time: int = 2,
    memory: int = 1_000_000,
) -> StageResult:
    """A StageResult with ``output`` = stdout then stderr and the status derived from ``code``."""
    if status is None and code not in (0, None):
        status, message = StageStatus.RUNTIME_ERROR, message or f"Exited with error status {code}"
    return StageResult(
        stdout=stdout,
        stderr=stderr,
        output=stdout + stderr,
        code=code,
        signal=signal,
        status=status,
        message=message,
        cpu_time=cpu_time,
        wall_time=wall_time,
        memory=memory,
    )


@attrs.frozen
class FakeStage:
    """What one scripted stage does."""

    result: StageResult = attrs.field(factory=stage_result)
    chunks: tuple[tuple[StreamName, bytes], ...] = ()
    """Live output sent by an interactive stage before it ends."""
    duration: float = 0.0
    """Seconds the stage runs before it ends on its own (``math.inf``: until killed)."""
    echo: bool = False
    """Interactive: stdin is echoed on stdout; the stage ends when stdin is closed."""
    error: str | None = None
    """When set, opening the stage raises SandboxError with this message."""
    writes: Mapping[str, bytes] = attrs.field(factory=dict)
    """Files the stage leaves in the box (path to content), as a compile leaves its output."""


@attrs.define
class StageCall:
    """One stage the fake was asked to run."""

    slot: int
    spec: StageSpec
    stdin: bytearray = attrs.field(factory=bytearray)
    stdin_closed: bool = False
    signals: list[int] = attrs.field(factory=list)
    killed: bool = False
    interactive: bool = False


@attrs.define(eq=False)
class FakeRunningStage:
    """The fake's interactive stage, with the interface of ``pistond.sandbox.service.Stage``."""

    call: StageCall
    plan: FakeStage
    limit: int
    _send: trio.MemorySendChannel[tuple[StreamName, bytes]]
    _receive: trio.MemoryReceiveChannel[tuple[StreamName, bytes]]
    _ended: trio.Event = attrs.field(factory=trio.Event)
    _echoed: int = 0
    result: StageResult | None = None

    async def write(self, data: bytes) -> None:
        """Record ``data`` as stdin (and echo it when scripted to)."""
        await trio.lowlevel.checkpoint()
        if self.call.stdin_closed or self._ended.is_set():
            return
        self.call.stdin += data
        if self.plan.echo:
            kept = data[: max(self.limit - self._echoed, 0)]
            self._echoed += len(kept)
            if kept:
                self._send.send_nowait(("stdout", kept))
            if len(kept) < len(data):
                self._end(_limit_result("stdout", bytes(self.call.stdin[: self.limit])))

    async def close_stdin(self) -> None:
        """Record EOF on stdin; ends an echo stage."""
        await trio.lowlevel.checkpoint()
        self.call.stdin_closed = True
        if self.plan.echo:
            echoed = bytes(self.call.stdin[: self.limit]).decode("utf-8", errors="replace")
            self._end(stage_result(stdout=echoed))

    def signal(self, signum: int) -> None:
        """Record a signal for the program."""
        self.call.signals.append(signum)

    def kill(self) -> None:
        """End the stage as killed (SG SIGKILL)."""
        self.call.killed = True
        self._end(
            stage_result(
                code=None,
                signal="SIGKILL",
                status=StageStatus.SIGNALED,
                message="Caught fatal signal 9",
            )
        )

    async def output(self) -> AsyncIterator[tuple[StreamName, bytes]]:
        """The scripted chunks, then echoed stdin, until the stage ends."""
        async with self._receive.clone() as receive:
            async for item in receive:
                yield item

    async def wait(self) -> StageResult:
        """Wait for the stage to end; its result."""
        await self._ended.wait()
        assert self.result is not None
        return self.result

    def _end(self, result: StageResult) -> None:
        if not self._ended.is_set():
            self.result = result
            self._ended.set()
            self._send.close()

    async def run(self) -> None:
        """Send the scripted chunks, then end after ``duration`` unless ended before."""
        for chunk in self.plan.chunks:
            self._send.send_nowait(chunk)
        await trio.lowlevel.checkpoint()
        if self.plan.echo:
            return
        with trio.move_on_after(self.plan.duration):
            await self._ended.wait()
        self._end(self.plan.result)


def _limit_result(stream: StreamName, kept: bytes) -> StageResult:
    text = kept.decode("utf-8", errors="replace")
    return stage_result(
        stdout=text,
        code=None,
        signal="SIGKILL",
        status=StageStatus.STDOUT_LIMIT if stream == "stdout" else StageStatus.STDERR_LIMIT,
        message=f"{stream} length exceeded",
    )


@attrs.define(eq=False)
class FakeBox:
    """The fake's box, with the interface of ``pistond.sandbox.service.Box``."""

    _sandbox: FakeSandbox
    slot: int
    uid: int
    files: dict[str, bytes] = attrs.field(factory=dict)

    def write_files(self, files: Sequence[SourceFile]) -> None:
        """Record the files, refusing what the real box refuses (bad names, duplicates)."""
        for file in files:
            key = "/".join(split_name(file.name))
            if key in self.files:
                raise SandboxError(f"cannot write file {file.name!r}: already exists")
            self.files[key] = file.content

    def read_submission(
        self,
        *,
        max_entries: int,
        max_bytes: int,
        skip: Callable[[str, bool], bool] | None = None,
    ) -> BoxTree:
        """The recorded files (mode 0644) and their parent directories, as the real box
        reads them, with the same bounds."""
        entries: list[TreeEntry] = []
        directories: set[str] = set()
        for path in sorted(self.files):
            parts = path.split("/")
            parents = ["/".join(parts[:depth]) for depth in range(1, len(parts))]
            if any(skip is not None and skip(parent, True) for parent in parents):
                continue
            if skip is not None and skip(path, False):
                continue
            for parent in parents:
                if parent not in directories:
                    directories.add(parent)
                    entries.append(TreeEntry(parent, EntryKind.DIRECTORY, 0o755, 0))
            entries.append(TreeEntry(path, EntryKind.FILE, 0o644, 0, self.files[path]))
        tree = BoxTree(mode=0o700, entries=tuple(entries))
        if len(entries) > max_entries or tree.size > max_bytes:
            raise TreeTooLarge("the tree is larger than allowed")
        return tree

    def write_submission(self, tree: BoxTree) -> None:
        """Record the tree's files, as :meth:`write_files` records submitted ones."""
        for entry in tree.entries:
            if entry.kind is not EntryKind.DIRECTORY:
                self.files["/".join(split_name(entry.path))] = entry.content

    @asynccontextmanager
    async def open_stage(
        self,
        spec: StageSpec,
        *,
        stage: str = "stage",
        live: bool = True,
        admission: Admission | None = None,
    ) -> AsyncIterator[FakeRunningStage]:
        """Start the next scripted stage."""
        plan = self._sandbox._next()
        call = StageCall(slot=self.slot, spec=spec, interactive=live)
        self._sandbox.calls.append(call)
        if plan.error is not None:
            await trio.lowlevel.checkpoint()
            raise SandboxError(plan.error)
        self.files.update(plan.writes)
        send, receive = trio.open_memory_channel[tuple[StreamName, bytes]](math.inf)
        running = FakeRunningStage(
            call=call,
            plan=plan,
            limit=spec.limits.output_max_size,
            send=send,
            receive=receive,
        )
        async with trio.open_nursery() as nursery:
            nursery.start_soon(running.run)
            try:
                yield running
            finally:
                if running.result is None:
                    running.kill()
                if admission is not None:
                    admission.release()

    async def run_stage(
        self,
        spec: StageSpec,
        stdin: bytes = b"",
        *,
        stage: str = "stage",
        admission: Admission | None = None,
    ) -> StageResult:
        """Run the next scripted stage with ``stdin``."""
        async with self.open_stage(spec, stage=stage, live=False, admission=admission) as running:
            await running.write(stdin)
            await running.close_stdin()
            return await running.wait()


@attrs.define(eq=False)
class FakeSandbox:
    """A sandbox that runs nothing: stages return what was scripted, every call is recorded."""

    info: SandboxInfo = attrs.field(
        factory=lambda: SandboxInfo(cgroup="none", seccomp=False, network=False)
    )
    box_uid_base: int = 60_000
    default: FakeStage = attrs.field(factory=FakeStage)
    """What a stage does when nothing is scripted."""
    calls: list[StageCall] = attrs.field(factory=list)
    boxes: list[FakeBox] = attrs.field(factory=list)
    """Every box opened, in order; ``open_boxes`` counts those still open."""
    open_boxes: int = 0
    quarantined: set[int] = attrs.field(factory=set)
    """Slots retired as the real sandbox retires them (tests add to it directly)."""
    _plans: deque[FakeStage] = attrs.field(factory=deque)

    def script(self, *stages: FakeStage) -> None:
        """Queue what the next stages do, in order."""
        self._plans.extend(stages)

    def _next(self) -> FakeStage:
        return self._plans.popleft() if self._plans else self.default

    @asynccontextmanager
    async def open_box(self, slot: int) -> AsyncIterator[FakeBox]:
        """Open a fake box for ``slot``."""
        await trio.lowlevel.checkpoint()
        box = FakeBox(sandbox=self, slot=slot, uid=self.box_uid_base + slot)
        self.boxes.append(box)
        self.open_boxes += 1
        try:
            yield box
        finally:
            self.open_boxes -= 1


if TYPE_CHECKING:

    def _satisfies_the_contract(sandbox: FakeSandbox) -> SandboxLike:
        """mypy checks that the double offers what the job manager uses of a sandbox."""
        return sandbox
