"""fake_sandbox: the unprivileged double has the real interface and returns what was scripted."""

from __future__ import annotations

import math

import pytest
import trio

from pistond.errors import SandboxError
from pistond.models import SourceFile, StageStatus
from pistond.sandbox.spec import RootView, StageLimits, StageSpec
from pistond.testing.fake_sandbox import FakeSandbox, FakeStage, stage_result

LIMITS = StageLimits(
    wall_time_ms=1000,
    cpu_time_ms=1000,
    memory_bytes=None,
    max_processes=8,
    max_open_files=64,
    max_file_size=1000,
    output_max_size=8,
)
SPEC = StageSpec(argv=("/bin/true",), env={}, root=RootView(), limits=LIMITS)


async def test_fake_sandbox_returns_scripted_results_in_order() -> None:
    """Stages return the scripted results in order, then the default; calls are recorded."""
    sandbox = FakeSandbox()
    sandbox.script(FakeStage(result=stage_result(stdout="one")), FakeStage(stage_result(code=3)))
    async with sandbox.open_box(2) as box:
        assert box.uid == 60_002
        first = await box.run_stage(SPEC, stdin=b"in")
        second = await box.run_stage(SPEC)
        third = await box.run_stage(SPEC)
    assert first.stdout == "one"
    assert (second.status, second.message) == (
        StageStatus.RUNTIME_ERROR,
        "Exited with error status 3",
    )
    assert third.status is None
    assert [bytes(call.stdin) for call in sandbox.calls] == [b"in", b"", b""]
    assert sandbox.calls[0].spec is SPEC
    assert sandbox.open_boxes == 0


async def test_fake_box_refuses_what_the_real_box_refuses() -> None:
    """Bad names and duplicates raise SandboxError, as in the real box."""
    sandbox = FakeSandbox()
    async with sandbox.open_box(0) as box:
        box.write_files([SourceFile("a/b.py", b"x", True)])
        assert box.files == {"a/b.py": b"x"}
        with pytest.raises(SandboxError):
            box.write_files([SourceFile("../x", b"x", True)])
        with pytest.raises(SandboxError):
            box.write_files([SourceFile("a/b.py", b"y", True)])


async def test_fake_stage_streams_chunks_then_result() -> None:
    """An interactive stage yields its scripted chunks, then its result."""
    sandbox = FakeSandbox()
    sandbox.script(FakeStage(result=stage_result(stdout="ab"), chunks=(("stdout", b"ab"),)))
    async with sandbox.open_box(0) as box, box.open_stage(SPEC) as stage:
        chunks = [chunk async for chunk in stage.output()]
        result = await stage.wait()
    assert chunks == [("stdout", b"ab")]
    assert result.stdout == "ab"


async def test_fake_stage_echo_caps_and_ends_on_close() -> None:
    """An echo stage sends stdin back within the cap and ends when stdin is closed."""
    sandbox = FakeSandbox(default=FakeStage(echo=True))
    async with sandbox.open_box(0) as box, box.open_stage(SPEC) as stage:
        await stage.write(b"hello")
        await stage.close_stdin()
        chunks = [chunk async for chunk in stage.output()]
        result = await stage.wait()
    assert chunks == [("stdout", b"hello")]
    assert result.stdout == "hello"


async def test_fake_stage_kill_and_signal_are_recorded() -> None:
    """kill ends a long stage as SG SIGKILL; signals are recorded."""
    sandbox = FakeSandbox(default=FakeStage(duration=math.inf))
    async with sandbox.open_box(0) as box, box.open_stage(SPEC) as stage:
        stage.signal(2)
        stage.kill()
        with trio.fail_after(1):
            result = await stage.wait()
    assert (result.status, result.signal) == (StageStatus.SIGNALED, "SIGKILL")
    assert sandbox.calls[0].signals == [2]
    assert sandbox.calls[0].killed


async def test_fake_stage_error_raises_sandbox_error() -> None:
    """A scripted setup error raises SandboxError from open_stage, as a spawn failure does."""
    sandbox = FakeSandbox()
    sandbox.script(FakeStage(error="spawn failed"))
    async with sandbox.open_box(0) as box:
        with pytest.raises(SandboxError, match="spawn failed"):
            await box.run_stage(SPEC)
