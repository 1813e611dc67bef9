"""One job: files, compile stage, run stage, result; one nursery per job, cleanup on any exit."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import outcome
import trio

from pistond.capacity import Capacity, StageTicket, default_stage_limit
from pistond.errors import InvalidParams, SandboxError
from pistond.limits import lowered, runtime_limits, stage_limits
from pistond.models import (
    ExecuteRequest,
    JobCounts,
    JobResult,
    StageName,
    StageResult,
    StageStatus,
)
from pistond.sandbox.spec import StageSpec
from pistond.validation import validate_execute

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

    @classmethod
    def create(
        cls, config: DaemonConfig, sandbox: SandboxLike, registry: RuntimeRegistry
    ) -> JobManager:
        """A job manager with the configured slots and queue."""
        capacity = Capacity(
            slots=config.max_concurrent_jobs,
            max_queue=config.max_queue_size,
            queue_timeout=config.queue_timeout / 1000,
            stage_limit=config.max_running_stages or default_stage_limit(),
        )
        return cls(config=config, sandbox=sandbox, registry=registry, capacity=capacity)

    def prepare(self, params: Mapping[str, Any]) -> PreparedJob:
        """Validate ``execute`` params and resolve runtime and limits.

        Raises:
            InvalidParams: a field is missing or wrong.
            RuntimeUnknown: no runtime matches.
        """
        request, runtime, caps = validate_execute(
            params,
            resolve=self.registry.resolve,
            runtime_limits=lambda rt: runtime_limits(self.config, rt.language, rt.limit_overrides),
        )
        return PreparedJob(request=request, runtime=runtime, limits=lowered(caps, request.limits))

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

        With ``events`` and ``stdin`` the run stage is interactive: stdin chunks are written
        as they come (``None`` closes stdin) and output is reported as it arrives. ``finished``
        is given the result as soon as it is known, before the box and slot are released.
        """
        request, runtime = job.request, job.runtime
        deadline = self.capacity.deadline()
        try:
            async with self.capacity.slot() as slot, self._box(slot) as box:
                logger.debug(
                    "job %s slot %d: %s-%s", job_id, slot, runtime.language, runtime.version
                )
                try:
                    box.write_files(request.files)
                except SandboxError as exc:
                    raise InvalidParams(f"files cannot be written: {exc}") from None
                compile_result = None
                run_result = None
                if runtime.compiled:
                    compile_result = await self._stage(
                        box, job, job_id, StageName.COMPILE, deadline, events=events, stdin=None
                    )
                    if compile_result.code != 0:
                        self._count(compile_result)
                if compile_result is None or compile_result.code == 0:
                    run_result = await self._stage(
                        box, job, job_id, StageName.RUN, deadline, events=events, stdin=stdin
                    )
                    self._count(run_result)
                result = JobResult(runtime.language, runtime.version, compile_result, run_result)
                if finished is not None:
                    finished(outcome.Value(result))
            return result
        except (trio.Cancelled, InvalidParams):
            raise
        except BaseException:
            self.failed += 1
            raise

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

    def stage_spec(self, job: PreparedJob, stage: StageName) -> StageSpec:
        """The sandbox spec of one stage of a job."""
        runtime, request = job.runtime, job.request
        env = dict(runtime.env)
        env["HOME"] = "/tmp"
        env["PISTON_LANGUAGE"] = runtime.language
        if stage is StageName.COMPILE:
            assert runtime.compile_argv is not None
            names = tuple(file.name for file in request.files if file.is_text)
            argv = (*runtime.compile_argv, *names)
        else:
            argv = (*runtime.run_argv, request.main, *request.args)
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
    ) -> StageResult:
        """One stage, once the stage gate admits it (within the job's ``deadline``).

        Raises:
            Overloaded: the gate admitted no stage before the deadline.
        """
        spec = self.stage_spec(job, stage)
        ticket = await self.capacity.stages.admit(deadline=deadline)
        try:
            if events is None:
                data = job.request.stdin if stage is StageName.RUN else b""
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
