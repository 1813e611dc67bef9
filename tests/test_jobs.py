"""The job manager: stages, compile failure, stdin, specs, limits, counters (fake sandbox)."""

from __future__ import annotations

import math
from pathlib import Path

import attrs
import outcome
import pytest
import trio

from pistond.compilecache import CompileCache
from pistond.config import load_config
from pistond.errors import InvalidParams, Overloaded, RuntimeUnknown
from pistond.jobs import JobManager
from pistond.models import JobResult, StageName, StageResult, StageStatus, Verdict
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
    assert call.spec.env == {
        "PATH": "/usr/bin:/bin",
        "HOME": "/tmp",
        "PISTON_LANGUAGE": "python",
        "PWD": "/box/submission",
        "SHLVL": "0",
    }
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
    # What bash exports before it execs, so a run without the script's bash sees the same.
    assert (spec.env["PWD"], spec.env["SHLVL"]) == (spec.cwd, "0")


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


C_FILES = [{"name": "main.c", "content": "int main(){}"}]


def c_params(**extra: object) -> dict[str, object]:
    return {"language": "c", "version": "*", "files": C_FILES, **extra}


async def test_jobs_tests_compile_once_and_run_each_test() -> None:
    """With tests, one compile stage, then one run stage per test with its stdin and args."""
    sandbox = FakeSandbox()
    sandbox.script(
        FakeStage(writes={"a.out": b"\x7fELF"}),
        FakeStage(result=stage_result(stdout="3\n")),
        FakeStage(result=stage_result(stdout="4\n")),
        FakeStage(result=stage_result(stdout="x\n", code=1)),
    )
    jobs = manager(sandbox)
    tests = [
        {"name": "one", "stdin": "1 2", "expected_output": "3\n"},
        {"stdin": "2 2", "args": ["-v"], "expected_output": "5\n"},
        {"name": "crash", "expected_output": "x\n"},
    ]
    job = jobs.prepare(c_params(tests=tests, stdin="default", args=["d"]))
    result = await jobs.execute(job)
    assert result.compile is not None
    assert result.run is None
    assert result.tests is not None
    assert [test.name for test in result.tests] == ["one", None, "crash"]
    assert [test.run.stdout for test in result.tests] == ["3\n", "4\n", "x\n"]
    assert [test.verdict for test in result.tests] == [
        Verdict.ACCEPTED,
        Verdict.WRONG_ANSWER,
        None,  # exit 1: judged by its status
    ]
    assert result.tests[2].run.status is StageStatus.RUNTIME_ERROR
    compile_call, *runs = sandbox.calls
    assert compile_call.spec.argv[-1] == "main.c"
    assert [bytes(call.stdin) for call in runs] == [b"1 2", b"2 2", b"default"]
    assert [call.spec.argv[-1] for call in runs] == ["d", "-v", "d"]
    assert jobs.counts().completed == 3


async def test_jobs_tests_each_run_gets_a_fresh_box_as_the_compile_left_it() -> None:
    """Every test after the first runs in a new box holding what the compile left, nothing
    of a previous test's writes."""
    sandbox = FakeSandbox()
    sandbox.script(
        FakeStage(writes={"a.out": b"binary", "obj/main.o": b"o"}),
        FakeStage(writes={"state": b"from test 1"}),
        FakeStage(),
    )
    jobs = manager(sandbox)
    await jobs.execute(jobs.prepare(c_params(tests=[{"stdin": "a"}, {"stdin": "b"}])))
    first, second = sandbox.boxes
    assert first.files == {
        "main.c": b"int main(){}",
        "a.out": b"binary",
        "obj/main.o": b"o",
        "state": b"from test 1",
    }
    assert second.files == {"main.c": b"int main(){}", "a.out": b"binary", "obj/main.o": b"o"}
    assert sandbox.open_boxes == 0


async def test_jobs_tests_leave_out_the_runtimes_compile_scratch() -> None:
    """What the runtime declares as compile scratch is not restored into later tests' boxes."""
    sandbox = FakeSandbox()
    sandbox.script(FakeStage(writes={"a.out": b"binary", "main.o": b"o", "tmp/x": b"t"}))
    scratchy = attrs.evolve(C, compile_scratch=("*.o", "tmp"))
    jobs = JobManager.create(load_config({}), sandbox, RuntimeRegistry(lambda: [scratchy]))
    await jobs.execute(jobs.prepare(c_params(tests=[{}, {}])))
    assert sandbox.boxes[1].files == {"main.c": b"int main(){}", "a.out": b"binary"}


async def test_jobs_tests_of_an_interpreted_runtime_rewrite_the_files() -> None:
    """Without a compile stage, each test's fresh box gets the submitted files again."""
    sandbox = FakeSandbox()
    sandbox.script(FakeStage(writes={"junk": b"1"}), FakeStage())
    jobs = manager(sandbox)
    result = await jobs.execute(jobs.prepare(params(tests=[{"stdin": "1"}, {"stdin": "2"}])))
    assert result.compile is None
    assert result.tests is not None
    assert len(result.tests) == 2
    assert sandbox.boxes[1].files == {"main.py": b"print(1)"}


async def test_jobs_tests_stop_at_a_failed_compile() -> None:
    """A failed compile ends the request: no test runs, tests and run are nil."""
    sandbox = FakeSandbox()
    sandbox.script(FakeStage(result=stage_result(stderr="error", code=1)))
    jobs = manager(sandbox)
    result = await jobs.execute(jobs.prepare(c_params(tests=[{"stdin": "1"}])))
    assert result.compile is not None
    assert result.compile.code == 1
    assert (result.run, result.tests) == (None, None)
    assert len(sandbox.calls) == 1


async def test_jobs_tests_share_the_box_when_the_compile_left_too_much() -> None:
    """When what the compile left exceeds the bounds kept, the tests run in its box."""
    sandbox = FakeSandbox()
    sandbox.script(FakeStage(writes={f"f{index}": b"" for index in range(10_001)}))
    jobs = manager(sandbox)
    result = await jobs.execute(jobs.prepare(c_params(tests=[{}, {}, {}])))
    assert result.tests is not None
    assert len(result.tests) == 3
    assert len(sandbox.boxes) == 1


async def test_jobs_tests_compare_ignoring_trailing_whitespace() -> None:
    """compare trailing_whitespace ignores spaces at line ends and empty lines at the end."""
    sandbox = FakeSandbox()
    sandbox.script(
        FakeStage(result=stage_result(stdout="1 2  \r\n3\n\n\n")),
        FakeStage(result=stage_result(stdout="1 2  \r\n3\n\n\n")),
    )
    jobs = manager(sandbox)
    expected = [{"expected_output": "1 2\n3"}]
    loose = await jobs.execute(jobs.prepare(params(tests=expected, compare="trailing_whitespace")))
    exact = await jobs.execute(jobs.prepare(params(tests=expected)))
    assert loose.tests is not None
    assert exact.tests is not None
    assert loose.tests[0].verdict is Verdict.ACCEPTED
    assert exact.tests[0].verdict is Verdict.WRONG_ANSWER


async def test_jobs_tests_are_capped_and_not_interactive() -> None:
    """PISTON_MAX_TESTS caps tests (0 refuses them); job.start refuses tests."""
    jobs = manager(FakeSandbox(), PISTON_MAX_TESTS="2")
    with pytest.raises(InvalidParams, match=r"^tests cannot hold more than 2 tests$"):
        jobs.prepare(params(tests=[{}, {}, {}]))
    with pytest.raises(InvalidParams, match=r"^tests are for execute only"):
        jobs.prepare(params(tests=[{}]), interactive=True)
    off = manager(FakeSandbox(), PISTON_MAX_TESTS="0")
    with pytest.raises(InvalidParams, match=r"^tests are not accepted by this daemon$"):
        off.prepare(params(tests=[{}]))


async def test_jobs_tests_result_goes_out_before_the_last_box_is_released() -> None:
    """The result of a request with tests is handed over once the last test ended."""
    sandbox = FakeSandbox()
    jobs = manager(sandbox)
    delivered: list[JobResult] = []

    def finished(result: outcome.Outcome[JobResult]) -> bool:
        delivered.append(result.unwrap())
        assert sandbox.open_boxes == 1
        return True

    job = jobs.prepare(params(tests=[{}, {}]))
    result = await jobs.run(job, job_id="j1", finished=finished)
    assert delivered == [result]


C_BUILT = attrs.evolve(C, identity="build-1")


async def cached_manager(sandbox: FakeSandbox, tmp_path: Path, **environ: str) -> JobManager:
    config = load_config({"PISTON_DATA_DIRECTORY": str(tmp_path), **environ})
    cache = await CompileCache.open(config, [C_BUILT])
    return JobManager.create(config, sandbox, RuntimeRegistry(lambda: [C_BUILT]), cache=cache)


async def test_jobs_cache_hit_skips_the_compile_and_restores_its_box(tmp_path: Path) -> None:
    """An identical request runs no compile stage: the cached one is reported (cached true)
    and its box holds what the compile left; the run stage runs as usual."""
    sandbox = FakeSandbox()
    compile_stage = stage_result(stderr="warning: unused\n", wall_time=400)
    sandbox.script(FakeStage(result=compile_stage, writes={"a.out": b"binary"}))
    jobs = await cached_manager(sandbox, tmp_path)
    cold = await jobs.execute(jobs.prepare(c_params()))
    warm = await jobs.execute(jobs.prepare(c_params(stdin="in")))
    assert cold.compile == compile_stage
    assert warm.compile == attrs.evolve(compile_stage, cached=True)
    assert warm.run is not None
    assert [call.spec.argv[1].rsplit("/", 1)[-1] for call in sandbox.calls] == [
        "compile",
        "run",
        "run",
    ]
    assert sandbox.boxes[1].files == {"main.c": b"int main(){}", "a.out": b"binary"}
    assert bytes(sandbox.calls[2].stdin) == b"in"
    stats = jobs.cache_statistics()
    assert (stats.hits, stats.misses, stats.stores) == (1, 1, 1)


async def test_jobs_cache_misses_on_any_change_and_honours_the_opt_out(tmp_path: Path) -> None:
    """A changed byte misses; compile_cache false neither uses nor fills the cache."""
    sandbox = FakeSandbox()
    jobs = await cached_manager(sandbox, tmp_path)
    await jobs.execute(jobs.prepare(c_params()))
    changed = [{"name": "main.c", "content": "int main(){ }"}]
    await jobs.execute(jobs.prepare(c_params(files=changed)))
    await jobs.execute(jobs.prepare(c_params(compile_cache=False)))
    optout = [{"name": "main.c", "content": "int main(){return 0;}"}]
    await jobs.execute(jobs.prepare(c_params(files=optout, compile_cache=False)))
    await jobs.execute(jobs.prepare(c_params(files=optout)))
    compiles = [call for call in sandbox.calls if call.spec.argv[1].endswith("compile")]
    assert len(compiles) == 5
    stats = jobs.cache_statistics()
    assert (stats.hits, stats.misses, stats.stores) == (0, 3, 3)


async def test_jobs_cache_never_keeps_a_failed_compile(tmp_path: Path) -> None:
    """A compile that exits non-zero or hits a limit is not cached: the next one compiles."""
    sandbox = FakeSandbox()
    sandbox.script(
        FakeStage(result=stage_result(stderr="error", code=1)),
        FakeStage(result=stage_result(code=None, signal="SIGKILL", status=StageStatus.TIMEOUT)),
    )
    jobs = await cached_manager(sandbox, tmp_path)
    for _ in range(3):
        await jobs.execute(jobs.prepare(c_params()))
    assert jobs.cache_statistics().stores == 1  # only the third, which succeeded
    assert len(sandbox.calls) == 4  # compile, compile, compile + run


async def test_jobs_cache_concurrent_identical_requests_compile_once(tmp_path: Path) -> None:
    """Identical requests arriving while the first compiles wait for it and share its result."""
    sandbox = FakeSandbox()
    sandbox.script(FakeStage(duration=0.2, writes={"a.out": b"binary"}))
    jobs = await cached_manager(sandbox, tmp_path, PISTON_MAX_CONCURRENT_JOBS="4")
    results: list[JobResult] = []

    async def one() -> None:
        results.append(await jobs.execute(jobs.prepare(c_params())))

    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(one)
    compiles = [call for call in sandbox.calls if call.spec.argv[1].endswith("compile")]
    assert len(compiles) == 1
    assert sorted(result.compile.cached for result in results if result.compile) == [
        False,
        True,
        True,
        True,
    ]
    assert all(box.files.get("a.out") == b"binary" for box in sandbox.boxes)


async def test_jobs_cache_serves_tests_and_interactive_jobs(tmp_path: Path) -> None:
    """A cached compile serves a request with tests (one box per test) and an interactive job,
    whose events replay the compile stage with its output and cached true."""
    sandbox = FakeSandbox()
    sandbox.script(FakeStage(result=stage_result(stdout="note\n"), writes={"a.out": b"b"}))
    jobs = await cached_manager(sandbox, tmp_path)
    await jobs.execute(jobs.prepare(c_params()))
    result = await jobs.execute(jobs.prepare(c_params(tests=[{}, {}])))
    assert result.compile is not None
    assert result.compile.cached
    assert [box.files.get("a.out") for box in sandbox.boxes[1:]] == [b"b", b"b"]
    events = RecordedEvents()
    await jobs.run(jobs.prepare(c_params(), interactive=True), job_id="j9", events=events)
    assert events.seen[:3] == [
        ("stage", StageName.COMPILE),
        ("output", (StageName.COMPILE, "stdout", b"note\n")),
        ("finished", (StageName.COMPILE, True)),
    ]


@attrs.define
class RecordedEvents:
    seen: list[tuple[str, object]] = attrs.field(factory=list)

    async def stage_started(self, stage: StageName) -> None:
        self.seen.append(("stage", stage))

    async def output(self, stage: StageName, stream: str, data: bytes) -> None:
        self.seen.append(("output", (stage, stream, data)))

    async def stage_finished(self, stage: StageName, result: StageResult) -> None:
        self.seen.append(("finished", (stage, result.cached)))
