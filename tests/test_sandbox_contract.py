"""The sandbox seam (pistond.sandbox.contract): the real sandbox and the fake behave alike.

Rules: every test runs twice, on :class:`pistond.testing.FakeSandbox` (scripted: an echo stage
for ``cat``, a stage that runs until killed for ``sleep``) and on the real sandbox (root,
namespaces and cgroups; skipped with the reason where absent), through the Protocols only.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING

import pytest
import trio

from pistond.capacity import StageGate
from pistond.config import DaemonConfig
from pistond.errors import SandboxError
from pistond.models import SourceFile, StageStatus
from pistond.sandbox import RootView, StageLimits, StageSpec, launch
from pistond.sandbox.hostfs import EntryKind, TreeTooLarge
from pistond.sandbox.service import open_sandbox
from pistond.testing import FakeSandbox, FakeStage

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from pistond.sandbox.contract import SandboxLike

LIMITS = StageLimits(
    wall_time_ms=10_000,
    cpu_time_ms=5000,
    memory_bytes=None,
    max_processes=16,
    max_open_files=64,
    max_file_size=1_000_000,
    output_max_size=1024,
)
CAT = StageSpec(argv=("/bin/cat",), env={"PATH": "/usr/bin:/bin"}, root=RootView(), limits=LIMITS)
SLEEP = StageSpec(
    argv=("/bin/sleep", "30"), env={"PATH": "/usr/bin:/bin"}, root=RootView(), limits=LIMITS
)


def _real_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "the real sandbox needs root"
    if launch.find_executable() is None:
        return "the native launcher was not built"
    return None


@pytest.fixture(params=["fake", "real"])
async def sandbox(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SandboxLike]:
    """The fake, scripted for CAT and SLEEP in turn, then the real sandbox."""
    if request.param == "fake":
        fake = FakeSandbox()
        fake.script(FakeStage(echo=True), FakeStage(duration=math.inf))
        yield fake
        return
    reason = _real_unavailable()
    if reason is not None:
        pytest.skip(reason)
    config = DaemonConfig(
        data_directory=tmp_path / "data", socket=tmp_path / "pistond.sock", max_concurrent_jobs=2
    )
    launcher = launch.start_built()
    try:
        async with open_sandbox(config, launcher) as real:
            yield real
    finally:
        await launcher.aclose()


async def test_contract_files_are_written_once(sandbox: SandboxLike) -> None:
    """Submitted files are written into the box; the same name twice is a SandboxError."""
    async with sandbox.open_box(0) as box:
        box.write_files([SourceFile("main.sh", b"echo hi\n", True)])
        with pytest.raises(SandboxError):
            box.write_files([SourceFile("main.sh", b"again\n", True)])


async def test_contract_interactive_stage_echoes_and_ends_at_eof(sandbox: SandboxLike) -> None:
    """An interactive stage streams its output as it comes and ends when stdin closes."""
    gate = StageGate(1)
    ticket = await gate.admit(deadline=math.inf)
    async with sandbox.open_box(0) as box, box.open_stage(CAT, admission=ticket) as stage:
        await stage.write(b"ping\n")
        seen = b""
        async for stream, chunk in stage.output():
            assert stream == "stdout"
            seen += chunk
            if seen == b"ping\n":
                await stage.close_stdin()
        with trio.fail_after(10):
            result = await stage.wait()
    assert (result.status, result.code, result.stdout) == (None, 0, "ping\n")
    assert gate.running == 0


async def test_contract_killed_stage_is_sg_sigkill(sandbox: SandboxLike) -> None:
    """Killing a running stage ends it SG with SIGKILL; the box closes cleanly after."""
    async with sandbox.open_box(1) as box:
        async with box.open_stage(CAT) as echo:  # the fake's first script; cat for real
            await echo.close_stdin()
            await echo.wait()
        async with box.open_stage(SLEEP) as stage:
            await trio.sleep(0.1)
            stage.kill()
            with trio.fail_after(10):
                result = await stage.wait()
    assert (result.status, result.signal) == (StageStatus.SIGNALED, "SIGKILL")


async def test_contract_box_contents_copy_into_a_fresh_box(sandbox: SandboxLike) -> None:
    """What a box holds reads back (bounded) and fills a fresh box of the slot alike."""
    files = [SourceFile("main.c", b"int main(){}", True), SourceFile("lib/util.h", b"#x", True)]
    async with sandbox.open_box(0) as box:
        box.write_files(files)
        with pytest.raises(TreeTooLarge):
            box.read_submission(max_entries=2, max_bytes=1 << 20)
        tree = box.read_submission(max_entries=10, max_bytes=1 << 20)
    assert [(entry.path, entry.kind, entry.content) for entry in tree.entries] == [
        ("lib", EntryKind.DIRECTORY, b""),
        ("lib/util.h", EntryKind.FILE, b"#x"),
        ("main.c", EntryKind.FILE, b"int main(){}"),
    ]
    async with sandbox.open_box(0) as fresh:
        fresh.write_submission(tree)
        assert fresh.read_submission(max_entries=10, max_bytes=1 << 20).entries == tree.entries
        with pytest.raises(SandboxError):
            fresh.write_files(files[:1])
