"""One job: files, compile stage, run stage, result; one nursery per job, cleanup on any exit."""

from __future__ import annotations

import fnmatch
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import outcome
import trio

from pistond.capacity import Capacity, StageTicket, default_stage_limit
from pistond.compilecache import (
    INLINE_BYTES,
    MAX_TREE_BYTES,
    MAX_TREE_ENTRIES,
    CachedCompile,
    CompileCache,
    RuntimeRef,
    compile_key,
)
from pistond.errors import InvalidParams, SandboxError
from pistond.limits import lowered, runtime_limits, stage_limits
from pistond.models import (
    CompileCacheStats,
    ExecuteRequest,
    JobCounts,
    JobResult,
    StageName,
    StageResult,
    StageStatus,
    TestCase,
    TestResult,
)
from pistond.sandbox.hostfs import BoxTree, TreeTooLarge
from pistond.sandbox.spec import WORKDIR, StageSpec
from pistond.validation import validate_execute
from pistond.verdicts import judge

if TYPE_CHECKING:
    from pistond.config import DaemonConfig, Limits
    from pistond.runtimes import Runtime, RuntimeRegistry
    from pistond.sandbox.contract import BoxLike, SandboxLike, StageLike

logger = logging.getLogger(__name__)

OutputCallback = Callable[[str, bytes], Awaitable[None]]


class JobEvents(Protocol):
    """Receives the progress of an interactive job, in order."""

    async def stage_started(self, stage: StageName) -> None:
        """A stage's sandbox is about to start."""

    async def output(self, stage: StageName, stream: str, data: bytes) -> None:
        """A chunk of a stage's stdout or stderr, within the output cap."""

    async def stage_finished(self, stage: StageName, result: StageResult) -> None:
        """A stage ended."""


@attrs.frozen
class PreparedJob:
    """A validated request with its runtime and resolved limits."""

    request: ExecuteRequest
    runtime: Runtime
    limits: Limits
    """The runtime's caps lowered by the request."""


@attrs.define(eq=False)
class JobManager:
    """Validates requests and runs jobs in sandboxes, at most ``max_concurrent_jobs`` at once."""

    config: DaemonConfig
    sandbox: SandboxLike
    registry: RuntimeRegistry
    capacity: Capacity
    completed: int = 0
    failed: int = 0
    _next_id: int = 0
    _running: dict[str, StageLike] = attrs.field(factory=dict)
    """Interactive jobs' running stages, by job id."""
    teardown: trio.Nursery | None = None
    """Where ``execute`` jobs run, so that their result can be returned before their box and
    slot are released (the daemon's; None runs them in the caller's task)."""
    cache: CompileCache = attrs.field(factory=lambda: CompileCache(max_bytes=0))
    """Compile results to reuse (off unless the daemon opened one)."""

    @classmethod
    def create(
        cls,
        config: DaemonConfig,
        sandbox: SandboxLike,
        registry: RuntimeRegistry,
        *,
        cache: CompileCache | None = None,
    ) -> JobManager:
        """A job manager with the configured slots and queue (and ``cache``, if given)."""
        capacity = Capacity(
            slots=config.max_concurrent_jobs,
            max_queue=config.max_queue_size,
            queue_timeout=config.queue_timeout / 1000,
            stage_limit=config.max_running_stages or default_stage_limit(),
        )
        manager = cls(config=config, sandbox=sandbox, registry=registry, capacity=capacity)
        if cache is not None:
            manager.cache = cache
        return manager

    def prepare(self, params: Mapping[str, Any], *, interactive: bool = False) -> PreparedJob:
        """Validate ``execute`` (or, ``interactive``, ``job.start``) params and resolve
        runtime and limits.

        Raises:
            InvalidParams: a field is missing or wrong (``tests`` are for ``execute`` only).
            RuntimeUnknown: no runtime matches.
        """
        if interactive and params.get("tests") is not None:
            raise InvalidParams("tests are for execute only, not for interactive jobs")
        request, runtime, caps = validate_execute(
            params,
            resolve=self.registry.resolve,
            runtime_limits=lambda rt: runtime_limits(self.config, rt.language, rt.limit_overrides),
            max_tests=self.config.max_tests,
        )
        return PreparedJob(request=request, runtime=runtime, limits=lowered(caps, request.limits))

    def cache_statistics(self) -> CompileCacheStats:
        """The compile cache's counters (``status``)."""
        return self.cache.statistics()

    def counts(self) -> JobCounts:
        """Running, queued, completed and failed jobs."""
        stats = self.capacity.statistics()
        return JobCounts(
            running=stats.running,
            queued=stats.queued,
            completed=self.completed,
            failed=self.failed,
        )

    def new_job_id(self) -> str:
        """A short id for logs and interactive jobs, unique within this daemon."""
        self._next_id += 1
        return f"j{self._next_id}"

    async def execute(self, job: PreparedJob, *, job_id: str | None = None) -> JobResult:
        """Run a prepared job to its result (``execute``).

        With a background nursery (:attr:`teardown`), the result is returned as soon as the
        last stage's is known; the job then releases its box and slot in the background.
        Cancelling the caller cancels the job (which still cleans up).
        """
        job_id = job_id or self.new_job_id()
        if self.teardown is None:
            return await self.run(job, job_id=job_id)
        handoff = _Handoff()
        self.teardown.start_soon(self._run_handing_off, job, job_id, handoff)
        return await handoff.receive()

    async def _run_handing_off(self, job: PreparedJob, job_id: str, handoff: _Handoff) -> None:
        """:meth:`run` in the background nursery, its outcome handed to the waiting caller."""
        with handoff.scope:
            try:
                result = await self.run(job, job_id=job_id, finished=handoff.deliver)
                handoff.deliver(outcome.Value(result))
            except Exception as exc:
                if not handoff.deliver(outcome.Error(exc)):
                    logger.exception("job %s: its box or slot could not be released", job_id)
            finally:
                handoff.deliver(outcome.Error(SandboxError("the job was cancelled")))

    async def run(
        self,
        job: PreparedJob,
        *,
        job_id: str,
        events: JobEvents | None = None,
        stdin: trio.MemoryReceiveChannel[bytes | None] | None = None,
        finished: Callable[[outcome.Outcome[JobResult]], bool] | None = None,
    ) -> JobResult:
        """Take a slot, write the files, run compile (if any) then run, and return the result.

        The compile stage is skipped when the compile cache holds its result (the box then gets
        what that compile left instead of the submitted files). With ``tests``, the run stage
        runs once per test, each in a fresh box holding what the compile left.

        With ``events`` and ``stdin`` the run stage is interactive: stdin chunks are written
        as they come (``None`` closes stdin) and output is reported as it arrives. ``finished``
        is given the result as soon as it is known, before the box and slot are released.
        """
        request, runtime = job.request, job.runtime
        deadline = self.capacity.deadline()
        try:
            async with self.capacity.slot() as slot:
                logger.debug(
                    "job %s slot %d: %s-%s", job_id, slot, runtime.language, runtime.version
                )
                async with self._box(slot) as box:
                    compile_result, tree = await self._prepare_box(
                        box, job, job_id, deadline, events=events
                    )
                    if compile_result is not None and compile_result.code != 0:
                        self._count(compile_result)
                        return self._finish(job, compile_result, None, finished)
                    if request.tests is None:
                        run_result = await self._stage(
                            box, job, job_id, StageName.RUN, deadline, events=events, stdin=stdin
                        )
                        self._count(run_result)
                        return self._finish(job, compile_result, run_result, finished)
                    tests = request.tests
                    reports = TestReports(job, compile_result, finished)
                    await self._test(box, job, job_id, tests[0], reports)
                    # When what the compile left could not be kept, the tests share its box.
                    shared = runtime.compiled and tree is None
                    for test in tests[1:] if shared else ():
                        await self._test(box, job, job_id, test, reports)
                for test in () if shared else tests[1:]:
                    await self._fresh_test(slot, job, job_id, test, tree=tree, reports=reports)
            return reports.result()
        except (trio.Cancelled, InvalidParams):
            raise
        except BaseException:
            self.failed += 1
            raise

    @staticmethod
    def _finish(
        job: PreparedJob,
        compile_result: StageResult | None,
        run_result: StageResult | None,
        finished: Callable[[outcome.Outcome[JobResult]], bool] | None,
    ) -> JobResult:
        """The result of a job without tests, handed to ``finished`` before the box goes."""
        runtime = job.runtime
        result = JobResult(runtime.language, runtime.version, compile_result, run_result)
        if finished is not None:
            finished(outcome.Value(result))
        return result

    async def _fresh_test(
        self,
        slot: int,
        job: PreparedJob,
        job_id: str,
        test: TestCase,
        *,
        tree: BoxTree | None,
        reports: TestReports,
    ) -> None:
        """Run one test in a new box of ``slot`` holding what the first box held before its
        run stage (``tree``, or the submitted files when there was no compile)."""
        async with self._box(slot) as box:
            if await self._restore(box, job, job_id, tree):
                await self._test(box, job, job_id, test, reports)
            else:
                reports.add(TestResult(test.name, sandbox_failure(job_id), None))

    async def _test(
        self, box: BoxLike, job: PreparedJob, job_id: str, test: TestCase, reports: TestReports
    ) -> None:
        """Run one test in ``box`` (a fresh run stage, the request's limits), with its verdict."""
        run = await self._stage(
            box,
            job,
            job_id,
            StageName.RUN,
            self.capacity.deadline(),
            events=None,
            stdin=None,
            test=test,
        )
        self._count(run)
        reports.add(
            TestResult(name=test.name, run=run, verdict=judge(test, run, job.request.compare))
        )

    @staticmethod
    def _write_files(box: BoxLike, job: PreparedJob) -> None:
        try:
            box.write_files(job.request.files)
        except SandboxError as exc:
            raise InvalidParams(f"files cannot be written: {exc}") from None

    async def _restore(
        self, box: BoxLike, job: PreparedJob, job_id: str, tree: BoxTree | None
    ) -> bool:
        """Give a fresh box what the job's first box held before its run stage (``tree``, or
        the submitted files); False (and logged) when that failed."""
        if tree is None:
            self._write_files(box, job)
            return True
        try:
            if tree.size > INLINE_BYTES:
                await trio.to_thread.run_sync(box.write_submission, tree)
            else:
                box.write_submission(tree)
        except SandboxError as exc:
            logger.error("job %s: the box could not be restored: %s", job_id, exc)
            return False
        return True

    async def _prepare_box(
        self,
        box: BoxLike,
        job: PreparedJob,
        job_id: str,
        deadline: float,
        *,
        events: JobEvents | None,
    ) -> tuple[StageResult | None, BoxTree | None]:
        """Fill the box for the run stage: the files, then the compile stage (if any), or what
        a cached compile left.

        Returns:
            The compile stage's result (None for interpreted runtimes), and what the box holds
            after it, when it was read for the cache or the tests (None otherwise, or when the
            compile left too much or failed).
        """
        request, runtime = job.request, job.runtime
        if not runtime.compiled:
            self._write_files(box, job)
            return None, None
        spec = self.stage_spec(job, StageName.COMPILE)
        ref = RuntimeRef.of(runtime)
        key = None
        if self.cache.enabled and request.compile_cache and ref is not None:
            key = compile_key(runtime, spec, request, self.config)
        if key is None or ref is None:
            self._write_files(box, job)
            result = await self._stage(
                box, job, job_id, StageName.COMPILE, deadline, events=events, stdin=None
            )
            keep = request.tests is not None and _succeeded(result)
            return result, await self._read_box(box, job, job_id) if keep else None
        async with self.cache.claim(key, ref) as claim:
            if claim.cached is not None:
                if not await self._restore(box, job, job_id, claim.cached.tree):
                    return sandbox_failure(job_id), None
                result = attrs.evolve(claim.cached.result, cached=True)
                logger.debug("job %s: compile served from the cache", job_id)
                if events is not None:
                    await _replay(events, result)
                return result, claim.cached.tree
            self._write_files(box, job)
            result = await self._stage(
                box, job, job_id, StageName.COMPILE, deadline, events=events, stdin=None
            )
            if not _succeeded(result):
                return result, None
            tree = await self._read_box(box, job, job_id)
            if tree is not None:
                await claim.fulfil(CachedCompile(result=result, tree=tree))
            return result, tree

    async def _read_box(self, box: BoxLike, job: PreparedJob, job_id: str) -> BoxTree | None:
        """What the box holds after a successful compile, less the runtime's scratch; None
        when it holds more than an entry may (then it is neither cached nor restored).

        Read in a worker thread (up to 16 MiB: the daemon's loop goes on meanwhile); no stage
        of the box runs until it is done.
        """
        read = functools.partial(
            box.read_submission,
            max_entries=MAX_TREE_ENTRIES,
            max_bytes=min(MAX_TREE_BYTES, self.config.disk_size),
            skip=_scratch_filter(job.runtime.compile_scratch),
        )
        try:
            return await trio.to_thread.run_sync(read)
        except TreeTooLarge as exc:
            logger.info("job %s: the box after compile is not kept: %s", job_id, exc)
        except OSError as exc:
            logger.warning("job %s: the box after compile could not be read: %s", job_id, exc)
        return None

    @asynccontextmanager
    async def _box(self, slot: int) -> AsyncIterator[BoxLike]:
        """The slot's box; a slot the sandbox had to quarantine is retired from the pool."""
        try:
            async with self.sandbox.open_box(slot) as box:
                yield box
        finally:
            if slot in self.sandbox.quarantined:
                self.capacity.retire(slot)

    def _count(self, result: StageResult) -> None:
        if result.status == StageStatus.INTERNAL_ERROR:
            self.failed += 1
        else:
            self.completed += 1

    def stage_spec(
        self, job: PreparedJob, stage: StageName, *, test: TestCase | None = None
    ) -> StageSpec:
        """The sandbox spec of one stage of a job (the run stage of one test, with ``test``)."""
        runtime, request = job.runtime, job.request
        env = dict(runtime.env)
        env["HOME"] = "/tmp"
        env["PISTON_LANGUAGE"] = runtime.language
        # What bash exports to what a run script execs; set here too so that a program
        # started without its script (a runtime's direct run_argv) sees the same.
        env["PWD"] = WORKDIR
        env.setdefault("SHLVL", "0")
        if stage is StageName.COMPILE:
            assert runtime.compile_argv is not None
            names = tuple(file.name for file in request.files if file.is_text)
            argv = (*runtime.compile_argv, *names)
        else:
            args = request.args if test is None else test.args
            argv = (*runtime.run_argv, request.main, *args)
        return StageSpec(
            argv=argv,
            env=env,
            root=runtime.root,
            limits=stage_limits(job.limits, stage, output_max_size=job.limits.output_max_size),
            network=not self.config.disable_networking,
        )

    async def _stage(
        self,
        box: BoxLike,
        job: PreparedJob,
        job_id: str,
        stage: StageName,
        deadline: float,
        *,
        events: JobEvents | None,
        stdin: trio.MemoryReceiveChannel[bytes | None] | None,
        test: TestCase | None = None,
    ) -> StageResult:
        """One stage, once the stage gate admits it (within ``deadline``); the run stage of
        one test with ``test``.

        Raises:
            Overloaded: the gate admitted no stage before the deadline.
        """
        spec = self.stage_spec(job, stage, test=test)
        ticket = await self.capacity.stages.admit(deadline=deadline)
        try:
            if events is None:
                if stage is StageName.COMPILE:
                    data = b""
                else:
                    data = job.request.stdin if test is None else test.stdin
                return await box.run_stage(spec, stdin=data, stage=stage.value, admission=ticket)
            return await self._live_stage(
                box,
                job_id,
                stage,
                spec,
                ticket,
                events=events,
                initial=job.request.stdin,
                stdin=stdin,
            )
        except SandboxError as exc:
            logger.error("job %s %s stage: sandbox setup failed: %s", job_id, stage.value, exc)
            result = sandbox_failure(job_id)
            if events is not None:
                await events.stage_finished(stage, result)
            return result
        finally:
            ticket.release()

    async def _live_stage(
        self,
        box: BoxLike,
        job_id: str,
        stage: StageName,
        spec: StageSpec,
        ticket: StageTicket,
        *,
        events: JobEvents,
        initial: bytes,
        stdin: trio.MemoryReceiveChannel[bytes | None] | None,
    ) -> StageResult:
        await events.stage_started(stage)
        async with (
            box.open_stage(spec, stage=stage.value, admission=ticket) as running,
            trio.open_nursery() as nursery,
        ):
            self._running[job_id] = running
            try:
                if stage is StageName.RUN:
                    nursery.start_soon(_feed_stdin, running, initial, stdin)
                else:
                    await running.close_stdin()
                async for stream, chunk in running.output():
                    await events.output(stage, stream, chunk)
                result: StageResult = await running.wait()
            finally:
                del self._running[job_id]
            nursery.cancel_scope.cancel()
        await events.stage_finished(stage, result)
        return result

    def signal(self, job_id: str, signum: int) -> None:
        """Deliver a signal to the program of an interactive job's running stage.

        Raises:
            InvalidParams: no stage of that job is running (it is queued or between stages).
        """
        running = self._running.get(job_id)
        if running is None:
            raise InvalidParams("the job has no running stage to signal")
        running.signal(signum)

    def kill(self, job_id: str) -> bool:
        """Kill the running stage of an interactive job; False if none is running."""
        running = self._running.get(job_id)
        if running is None:
            return False
        running.kill()
        return True


@attrs.define(eq=False)
class _Handoff:
    """A job's outcome, from the background task that runs it to the caller that waits."""

    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    """The job's own scope: cancelled when the caller stops waiting."""
    _ready: trio.Event = attrs.field(factory=trio.Event)
    _outcome: outcome.Outcome[JobResult] | None = None

    def deliver(self, result: outcome.Outcome[JobResult]) -> bool:
        """Hand ``result`` over; False when one was handed over already."""
        if self._ready.is_set():
            return False
        self._outcome = result
        self._ready.set()
        return True

    async def receive(self) -> JobResult:
        """Wait for the outcome; if the caller is cancelled meanwhile, cancel the job."""
        try:
            await self._ready.wait()
        except BaseException:
            self.scope.cancel()
            raise
        assert self._outcome is not None
        return self._outcome.unwrap()


@attrs.define(eq=False)
class TestReports:
    """The results of a request's tests as they come; the job's result after the last."""

    __test__ = False  # not a pytest test class

    job: PreparedJob
    compile: StageResult | None
    finished: Callable[[outcome.Outcome[JobResult]], bool] | None
    tests: list[TestResult] = attrs.field(factory=list)

    def add(self, result: TestResult) -> None:
        """Record one test's result; after the last, hand the job's result to ``finished``."""
        self.tests.append(result)
        assert self.job.request.tests is not None
        if len(self.tests) == len(self.job.request.tests) and self.finished is not None:
            self.finished(outcome.Value(self.result()))

    def result(self) -> JobResult:
        """The job's result: the compile stage and every test, no single run stage."""
        runtime = self.job.runtime
        return JobResult(runtime.language, runtime.version, self.compile, None, tuple(self.tests))


def _succeeded(result: StageResult) -> bool:
    """Whether a compile finished normally (exit 0, status null): only those are kept."""
    return result.status is None and result.code == 0


def _scratch_filter(patterns: tuple[str, ...]) -> Callable[[str, bool], bool] | None:
    """``skip(path, is_directory)`` for a runtime's compile scratch patterns; None for none."""
    if not patterns:
        return None

    def skip(path: str, is_directory: bool) -> bool:
        name = path.rsplit("/", 1)[-1]
        return any(
            fnmatch.fnmatchcase(path if "/" in pattern else name, pattern) for pattern in patterns
        )

    return skip


async def _replay(events: JobEvents, result: StageResult) -> None:
    """Report a cached compile stage to an interactive job as if it had run."""
    await events.stage_started(StageName.COMPILE)
    for stream, text in (("stdout", result.stdout), ("stderr", result.stderr)):
        if text:
            await events.output(StageName.COMPILE, stream, text.encode("utf-8", "replace"))
    await events.stage_finished(StageName.COMPILE, result)


def sandbox_failure(job_id: str) -> StageResult:
    """The XX result of a stage whose sandbox could not be built (details are in the log)."""
    return StageResult(
        stdout="",
        stderr="",
        output="",
        code=None,
        signal=None,
        status=StageStatus.INTERNAL_ERROR,
        message=f"sandbox setup failed (job {job_id})",
        cpu_time=0,
        wall_time=0,
        memory=0,
    )


async def _feed_stdin(
    running: StageLike,
    initial: bytes,
    stdin: trio.MemoryReceiveChannel[bytes | None] | None,
) -> None:
    """Write the initial stdin, then chunks from the channel until ``None`` or its end."""
    try:
        if initial:
            await running.write(initial)
        if stdin is None:
            await running.close_stdin()
            return
        async for chunk in stdin:
            if chunk is None:
                break
            await running.write(chunk)
        await running.close_stdin()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return
