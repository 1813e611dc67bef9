"""Interactive jobs: `job.start`, `job.write`, `job.close_stdin`, `job.signal`, `job.kill`.

A job belongs to the connection that started it: it runs in that connection's nursery, so a
closed connection cancels it (its sandbox is killed and cleaned). Progress goes back as the
notifications ``job.stage``, ``job.output``, ``job.exit`` and ``job.done``, in that order.

Notifications are queued on the connection without waiting; when its client leaves more than
the connection's notification buffer unread, the job is killed and its ``job.done`` says so
(error ``killed``), rather than the daemon holding ever more of its output.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any, Final

import attrs
import trio

from pistond.convert import converter
from pistond.errors import InternalError, InvalidParams, JobKilled, JobNotFound, PistondError
from pistond.models import JobDone, JobExit, JobOutput, JobStage, JobStarted
from pistond.rpc.connection import NotificationBufferFull
from pistond.signals import SIGNALS

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pistond.jobs import JobManager, PreparedJob
    from pistond.models import StageName, StageResult
    from pistond.rpc import Peer

logger = logging.getLogger(__name__)

STDIN_BUFFER_CHUNKS: Final = 64
"""Chunks of stdin a job buffers before ``job.write`` waits (back-pressure)."""
MAX_WRITE: Final = 1024 * 1024
"""Largest ``job.write`` chunk."""


@attrs.define(eq=False)
class InteractiveJob:
    """One running interactive job, as its connection sees it."""

    id: str
    stdin: trio.MemorySendChannel[bytes | None]
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    stdin_closed: bool = False
    killed: bool = False
    kill_reason: str = "job killed"
    """The message of the ``killed`` error in ``job.done``."""


@attrs.define(eq=False)
class PeerEvents:
    """Turns job progress into notifications to the owning connection."""

    peer: Peer
    job: InteractiveJob

    async def stage_started(self, stage: StageName) -> None:
        """Send ``job.stage``."""
        await self._send("job.stage", JobStage(job=self.job.id, stage=stage))

    async def output(self, stage: StageName, stream: str, data: bytes) -> None:
        """Send ``job.output``."""
        await self._send("job.output", JobOutput(job=self.job.id, stream=stream, data=data))

    async def _send(self, method: str, event: JobStage | JobOutput | JobExit) -> None:
        """Queue a notification; a client that leaves too many unread has its job killed."""
        try:
            self.peer.notify_nowait(method, converter.unstructure(event))
        except NotificationBufferFull as exc:
            if not self.job.killed:
                logger.warning("job %s killed: %s", self.job.id, exc)
                self.job.killed = True
                self.job.kill_reason = f"job killed: its client did not read its output ({exc})"
                self.job.scope.cancel()
        await trio.lowlevel.checkpoint()

    async def stage_finished(self, stage: StageName, result: StageResult) -> None:
        """Send ``job.exit`` with the stage fields but the captured text."""
        await self._send(
            "job.exit",
            JobExit(
                job=self.job.id,
                stage=stage,
                code=result.code,
                signal=result.signal,
                status=result.status,
                message=result.message,
                cpu_time=result.cpu_time,
                wall_time=result.wall_time,
                memory=result.memory,
                cached=result.cached,
            ),
        )


def _jobs(peer: Peer) -> dict[str, InteractiveJob]:
    jobs: dict[str, InteractiveJob] = peer.state.setdefault("jobs", {})
    return jobs


def _job(peer: Peer, params: Mapping[str, Any], allowed: frozenset[str]) -> InteractiveJob:
    unknown = sorted(set(params) - allowed - {"job"})
    if unknown:
        raise InvalidParams(f"unknown field {unknown[0]!r}")
    job_id = params.get("job")
    if not isinstance(job_id, str):
        raise InvalidParams("job is required as a string")
    job = _jobs(peer).get(job_id)
    if job is None:
        raise JobNotFound(f"no job {job_id[:32]!r} on this connection")
    return job


async def start_job(manager: JobManager, params: Mapping[str, Any], peer: Peer) -> dict[str, Any]:
    """``job.start``: validate, then run the job in the connection's nursery."""
    prepared = manager.prepare(params, interactive=True)
    job_id = manager.new_job_id()
    send, receive = trio.open_memory_channel[bytes | None](STDIN_BUFFER_CHUNKS)
    job = InteractiveJob(id=job_id, stdin=send)
    _jobs(peer)[job_id] = job
    peer.nursery.start_soon(_run, manager, prepared, job, receive, peer)
    started = JobStarted(
        job=job_id, language=prepared.runtime.language, version=prepared.runtime.version
    )
    result: dict[str, Any] = converter.unstructure(started)
    return result


async def _run(
    manager: JobManager,
    prepared: PreparedJob,
    job: InteractiveJob,
    stdin: trio.MemoryReceiveChannel[bytes | None],
    peer: Peer,
) -> None:
    events = PeerEvents(peer, job)
    error: PistondError | None = None
    try:
        with job.scope, stdin:
            await manager.run(prepared, job_id=job.id, events=events, stdin=stdin)
        if job.scope.cancelled_caught:
            error = JobKilled(job.kill_reason)
    except PistondError as exc:
        error = exc
    except Exception:
        logger.exception("interactive job %s failed", job.id)
        error = InternalError(f"internal error in job {job.id}")
    finally:
        _jobs(peer).pop(job.id, None)
    done = JobDone(job=job.id, error=None if error is None else error.to_wire())
    peer.notify_nowait("job.done", converter.unstructure(done), force=True)


async def write(params: Mapping[str, Any], peer: Peer) -> dict[str, Any]:
    """``job.write``: queue bytes for the program's stdin."""
    job = _job(peer, params, frozenset({"data"}))
    data = params.get("data")
    if isinstance(data, str):
        data = data.encode()
    if not isinstance(data, bytes):
        raise InvalidParams("data is required as bytes")
    if len(data) > MAX_WRITE:
        raise InvalidParams(f"data cannot exceed {MAX_WRITE} bytes per write")
    if job.stdin_closed:
        raise InvalidParams("stdin of this job is closed")
    if data:
        try:
            await job.stdin.send(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise InvalidParams("the job no longer reads stdin") from None
    return {}


async def close_stdin(params: Mapping[str, Any], peer: Peer) -> dict[str, Any]:
    """``job.close_stdin``: end the program's stdin after what was written."""
    job = _job(peer, params, frozenset())
    if not job.stdin_closed:
        job.stdin_closed = True
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await job.stdin.send(None)
    return {}


async def signal(manager: JobManager, params: Mapping[str, Any], peer: Peer) -> dict[str, Any]:
    """``job.signal``: deliver a signal to the program's process group."""
    job = _job(peer, params, frozenset({"signal"}))
    name = params.get("signal")
    if not isinstance(name, str) or name not in SIGNALS:
        raise InvalidParams("signal must be a name from Piston's table, such as SIGINT")
    manager.signal(job.id, SIGNALS[name])
    return {}


async def kill(manager: JobManager, params: Mapping[str, Any], peer: Peer) -> dict[str, Any]:
    """``job.kill``: kill the job's sandbox and end the job.

    A running stage ends as killed (``job.exit`` with SIGKILL) and no later stage runs; a job
    still waiting for a slot ends at once (``job.done`` with an error).
    """
    job = _job(peer, params, frozenset())
    job.killed = True
    if not manager.kill(job.id):
        job.scope.cancel()
    return {}
