"""The job manager: stages, compile failure, stdin, specs, limits, counters (fake sandbox)."""

from __future__ import annotations

import math

import pytest
import trio

from pistond.config import load_config
from pistond.errors import InvalidParams, Overloaded, RuntimeUnknown
from pistond.jobs import JobManager
from pistond.models import StageName, StageStatus
from pistond.runtimes import Runtime, RuntimeRegistry
from pistond.sandbox.spec import RootView
from pistond.testing.fake_sandbox import FakeSandbox, FakeStage, stage_result

PYTHON = Runtime(
    language="python",
    version="3.11.2",
    aliases=("py",),
    package=None,
    compiled=False,
    root=RootView(),
    compile_argv=None,
    run_argv=("/bin/bash", "/piston/packages/python/3.11.2/run"),
    env={"PATH": "/usr/bin:/bin"},
)
C = Runtime(
    language="c",
    version="12.2.0",
    aliases=("gcc",),
    package="gcc",
    compiled=True,
    root=RootView(),
    compile_argv=("/bin/bash", "/piston/packages/gcc/12.2.0/compile"),
    run_argv=("/bin/bash", "/piston/packages/gcc/12.2.0/run"),
    limit_overrides={"compile_timeout": 15000},
)


def manager(sandbox: FakeSandbox, **environ: str) -> JobManager:
    config = load_config(environ)
    registry = RuntimeRegistry(lambda: [PYTHON, C])
    return JobManager.create(config, sandbox, registry)


def params(**extra: object) -> dict[str, object]:
    return {
        "language": "py",
        "version": "*",
        "files": [{"name": "main.py", "content": "print(1)"}],
        **extra,
    }


async def test_jobs_interpreted_runs_one_stage() -> None:
    """An interpreted runtime runs only the run stage, with the main file, args and stdin."""
    sandbox = FakeSandbox()
    sandbox.script(FakeStage(result=stage_result(stdout="1\n")))
    jobs = manager(sandbox)
    job = jobs.prepare(params(args=["a", "b"], stdin="in"))
    result = await jobs.execute(job)
    assert result.language == "python"
    assert result.version == "3.11.2"
    assert result.compile is None
    assert result.run is not None
    assert result.run.stdout == "1\n"
    (call,) = sandbox.calls
    assert call.spec.argv == (
        "/bin/bash",
        "/piston/packages/python/3.11.2/run",
        "main.py",
        "a",
        "b",
    )
    assert bytes(call.stdin) == b"in"
    assert call.spec.env == {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "PISTON_LANGUAGE": "python"}
    assert call.spec.cwd == "/box/submission"
    assert call.spec.network is False
    assert call.spec.limits.wall_time_ms == 3000
    assert sandbox.boxes[0].files == {"main.py": b"print(1)"}
    assert sandbox.open_boxes == 0
    assert jobs.counts().completed == 1


async def test_jobs_compiled_runs_compile_then_run() -> None:
    """Compile gets every utf8 file and no stdin; run gets the main file and stdin."""
    sandbox = FakeSandbox()
    jobs = manager(sandbox)
    files = [
        {"name": "main.c", "content": "int main(){}"},
        {"name": "data.bin", "content": "AA==", "encoding": "base64"},
        {"name": "util.h", "content": ""},
    ]
    job = jobs.prepare({"language": "gcc", "version": "12", "files": files, "stdin": "x"})
    result = await jobs.execute(job)
    assert result.compile is not None
    assert result.run is not None
    compile_call, run_call = sandbox.calls
    assert compile_call.spec.argv[-2:] == ("main.c", "util.h")
    assert bytes(compile_call.stdin) == b""
    assert compile_call.spec.limits.wall_time_ms == 15000
    assert run_call.spec.argv[-1] == "main.c"
    assert bytes(run_call.stdin) == b"x"
    assert sandbox.calls[0].slot == sandbox.calls[1].slot


async def test_jobs_failed_compile_skips_run() -> None:
    """When compile exits non-zero (or is killed), run is nil."""
    sandbox = FakeSandbox()
    sandbox.script(FakeStage(result=stage_result(stderr="error", code=1)))
    jobs = manager(sandbox)
    job = jobs.prepare({"language": "c", "version": "*", "files": [{"content": "x"}]})
    result = await jobs.execute(job)
    assert result.compile is not None
    assert result.compile.status is StageStatus.RUNTIME_ERROR
    assert result.run is None
    assert len(sandbox.calls) == 1


async def test_jobs_request_lowers_limits_and_output_cap() -> None:
    """Request limits reach the stage spec; PISTON_LIMIT_OVERRIDES applies per language."""
    sandbox = FakeSandbox()
    jobs = manager(sandbox, PISTON_LIMIT_OVERRIDES='{"python": {"run_timeout": 5000}}')
    job = jobs.prepare(params(run_timeout=4000, output_max_size=10, run_memory_limit=1 << 20))
    await jobs.execute(job)
    limits = sandbox.calls[0].spec.limits
    assert (limits.wall_time_ms, limits.output_max_size, limits.memory_bytes) == (
        4000,
        10,
        1 << 20,
    )
    with pytest.raises(
        InvalidParams, match="run_timeout cannot exceed the configured limit of 5000"
    ):
        jobs.prepare(params(run_timeout=5001))


async def test_jobs_unknown_runtime() -> None:
    """An unknown language or version is runtime_unknown with Piston's message."""
    jobs = manager(FakeSandbox())
    with pytest.raises(RuntimeUnknown, match=r"^python-4\.x runtime is unknown$"):
        jobs.prepare(params(language="python", version="4.x"))


async def test_jobs_queue_full_is_overloaded() -> None:
    """Beyond the slots and the queue, execute is overloaded; no box is opened for it."""
    sandbox = FakeSandbox(default=FakeStage(duration=math.inf))
    jobs = manager(sandbox, PISTON_MAX_CONCURRENT_JOBS="1", PISTON_MAX_QUEUE_SIZE="0")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(jobs.execute, jobs.prepare(params()))
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(Overloaded):
            await jobs.execute(jobs.prepare(params()))
        assert jobs.counts().running == 1
        nursery.cancel_scope.cancel()
    assert sandbox.open_boxes == 0
    assert jobs.counts().running == 0


async def test_jobs_internal_error_counts_failed() -> None:
    """A stage with status XX counts as failed."""
    sandbox = FakeSandbox()
    xx = stage_result(code=None, status=StageStatus.INTERNAL_ERROR, message="setup failed")
    sandbox.script(FakeStage(result=xx))
    jobs = manager(sandbox)
    result = await jobs.execute(jobs.prepare(params()))
    assert result.run == xx
    assert jobs.counts().failed == 1


async def test_jobs_stage_spec_for_each_stage() -> None:
    """stage_spec builds argv, env and limits for compile and run."""
    jobs = manager(FakeSandbox())
    job = jobs.prepare({"language": "c", "version": "*", "files": [{"content": "x"}]})
    spec = jobs.stage_spec(job, StageName.COMPILE)
    assert spec.argv == ("/bin/bash", "/piston/packages/gcc/12.2.0/compile", "file0.code")
    assert spec.env["PISTON_LANGUAGE"] == "c"


async def test_jobs_quarantined_slot_is_retired() -> None:
    """When the sandbox quarantines a slot (processes outlived cleanup), jobs stop using it."""
    sandbox = FakeSandbox()
    jobs = manager(sandbox, PISTON_MAX_CONCURRENT_JOBS="2", PISTON_MAX_QUEUE_SIZE="0")
    sandbox.quarantined.add(0)
    await jobs.execute(jobs.prepare(params()))
    assert sandbox.calls[0].slot == 0
    for _ in range(3):
        await jobs.execute(jobs.prepare(params()))
    assert {call.slot for call in sandbox.calls[1:]} == {1}
    assert jobs.capacity.statistics().running == 1
