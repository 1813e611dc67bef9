"""``/api/v2/connect``: Piston's interactive WebSocket over the daemon's ``job.*`` methods.

Frames and close codes are Piston's (piston-v2.md §2): 4000 a second ``init``, 4001 no
accepted ``init`` within the init timeout, 4002 after an ``error`` frame, 4003 ``data`` or
``signal`` before ``init``, 4004 ``data`` for a stream other than stdin, 4005 an unknown signal,
4999 after the last ``exit``. Fixed upstream defects: output caps apply (D4, enforced by the
daemon, which kills the stage and reports SIGKILL), ``signal`` frames reach the program (D5),
the additive ``{"type": "eof"}`` frame closes its stdin (D6), and ``init.stdin`` is written to
the program instead of being dropped.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any, Final, NoReturn

import attrs
import trio
from starlette.responses import JSONResponse
from starlette.websockets import WebSocketDisconnect

from pistond.errors import ErrorCode, InvalidParams, PistondError
from pistond.gateway import v2
from pistond.gateway.admission import Admission
from pistond.gateway.audit import audit_record
from pistond.gateway.caller import caller_of
from pistond.gateway.errors import DAEMON_UNAVAILABLE, INTERNAL, DaemonUnavailable, HttpError
from pistond.gateway.fairness import RETRY_AFTER_SECONDS, Full, Places, jobs_cap
from pistond.gateway.keylimits import relaxed
from pistond.models import JobDone, JobExit, JobOutput, JobStage, JobStarted
from pistond.rpc.client import NotificationOverflow, sole_exception
from pistond.rpc.connection import ConnectionLost

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from starlette.websockets import WebSocket

    from pistond.client import InteractiveJob, PistonClient
    from pistond.gateway.audit import AuditRecord
    from pistond.gateway.daemon_socket import DaemonSocket
    from pistond.gateway.metrics import GatewayMetrics

logger = logging.getLogger(__name__)

CLOSE_ALREADY_INITIALIZED: Final = (4000, "Already Initialized")
CLOSE_INIT_TIMEOUT: Final = (4001, "Initialization Timeout")
CLOSE_NOTIFIED_ERROR: Final = (4002, "Notified Error")
CLOSE_NOT_INITIALIZED: Final = (4003, "Not yet initialized")
CLOSE_STDIN_ONLY: Final = (4004, "Can only write to stdin")
CLOSE_INVALID_SIGNAL: Final = (4005, "Invalid signal")
CLOSE_JOB_COMPLETED: Final = (4999, "Job Completed")
MAX_WRITE: Final = 1024 * 1024
"""Largest ``job.write`` chunk; bigger ``data`` frames are split."""
NOTIFICATION_BUFFER: Final = 4096
"""Notifications buffered per session; a client reading slower than that loses its session."""
OUTPUT_NOT_READ: Final = "the job was stopped: its output came faster than the client read it"
_ENDED: Final = frozenset({ErrorCode.JOB_NOT_FOUND})


_SEND_ERRORS: Final = (
    WebSocketDisconnect,
    RuntimeError,
    OSError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
)
"""How a WebSocket the client already left fails a send or receive."""


class _Closed(Exception):
    """Raised inside a session when it has sent its close frame."""


class _Disconnected(Exception):
    """Raised inside a session when the client went away."""


@attrs.define(eq=False)
class _Session:
    """One WebSocket client and, once initialised, its job."""

    websocket: WebSocket
    metrics: GatewayMetrics
    audit: AuditRecord
    lock: trio.Lock = attrs.field(factory=trio.Lock)
    closed: bool = False
    last_status: str | None = None
    decoders: dict[str, codecs.IncrementalDecoder] = attrs.field(factory=dict)

    async def send(self, frame: dict[str, Any]) -> None:
        """Send one JSON frame (serialised with every other send)."""
        async with self.lock:
            if self.closed:
                raise _Closed
            try:
                await self.websocket.send_text(json.dumps(frame, ensure_ascii=False))
            except _SEND_ERRORS as exc:
                raise _Disconnected from exc

    async def close(self, close: tuple[int, str]) -> NoReturn:
        """Send the close frame once, then end the session."""
        async with self.lock:
            if not self.closed:
                self.closed = True
                try:
                    await self.websocket.close(code=close[0], reason=close[1])
                except _SEND_ERRORS:
                    logger.debug("websocket already gone at close %d", close[0])
        raise _Closed

    async def fail(self, message: str) -> NoReturn:
        """Send an ``error`` frame and close with 4002."""
        try:
            await self.send({"type": "error", "message": message})
        finally:
            await self.close(CLOSE_NOTIFIED_ERROR)

    async def receive(self) -> dict[str, Any] | None:
        """The next frame as a JSON object; None for JSON that is not an object.

        Raises:
            _Disconnected: the client went away.
            _Closed: the frame was not JSON (after an ``error`` frame and close 4002).
        """
        try:
            message = await self.websocket.receive()
        except _SEND_ERRORS as exc:
            raise _Disconnected from exc
        if message["type"] == "websocket.disconnect":
            raise _Disconnected
        raw = message.get("text")
        if raw is None:
            raw = message.get("bytes") or b""
        try:
            frame = json.loads(raw)
        except (ValueError, RecursionError):
            await self.fail("Invalid JSON frame")
        return frame if isinstance(frame, dict) else None

    def decode(self, stream: str, data: bytes, *, final: bool = False) -> str:
        """Text of a chunk of ``stream``; UTF-8 split across chunks is joined, invalid replaced."""
        decoder = self.decoders.get(stream)
        if decoder is None:
            decoder = self.decoders[stream] = codecs.getincrementaldecoder("utf-8")("replace")
        return decoder.decode(data, final)


@attrs.define(eq=False)
class ConnectHandler:
    """The ``/api/v2/connect`` endpoint."""

    daemon: DaemonSocket
    metrics: GatewayMetrics
    init_timeout: float = 1.0
    jobs: Places = attrs.field(factory=lambda: Places("jobs"))
    """Jobs per client, shared with ``/execute``: a session holds one from its handshake."""
    sessions: Places = attrs.field(factory=lambda: Places("WebSocket sessions"))
    admission: Admission = attrs.field(factory=Admission)
    """The client's rate limit (one token per session) and its key's limits."""

    async def session(self, websocket: WebSocket) -> None:
        """Serve one WebSocket client until its job completes or either side leaves.

        A session takes a token of its client's rate limit, a WebSocket place and one of its
        client's job places before the handshake is accepted; without them the handshake is
        refused with HTTP 429 (the rate limit, or this client's share) or 503 (the gateway is
        full), ``{"message"}`` and ``Retry-After``. The accepted handshake carries the
        ``RateLimit-*`` headers.
        """
        caller = caller_of(websocket)
        client = caller.share
        try:
            rate = self.admission.charge(caller)
        except HttpError as exc:
            await _deny(websocket, exc.status, exc.message, dict(exc.headers))
            return
        try:
            with self.sessions.hold(client), self.jobs.hold(client, jobs_cap(websocket)):
                await self._serve(websocket, rate)
        except Full as full:
            logger.info("refused a WebSocket session from %s: %s", client, full.message)
            await _deny(
                websocket, full.status, full.message, {"Retry-After": str(RETRY_AFTER_SECONDS)}
            )

    async def _serve(self, websocket: WebSocket, rate: dict[str, str]) -> None:
        session = _Session(websocket, self.metrics, audit_record(websocket))
        headers = [(name.lower().encode(), value.encode()) for name, value in rate.items()]
        try:
            await websocket.accept(headers=headers)
            params, filled = await self._wait_init(session)
            await self._run_job(session, params, filled)
        except DaemonUnavailable:
            with contextlib.suppress(_Closed):
                await session.fail(DAEMON_UNAVAILABLE)
        except (_Closed, _Disconnected):
            pass

    async def _wait_init(self, session: _Session) -> tuple[dict[str, Any], dict[str, int]]:
        with trio.move_on_after(self.init_timeout):
            while True:
                frame = await session.receive()
                kind = None if frame is None else frame.get("type")
                if frame is None or kind not in {"init", "data", "signal", "eof"}:
                    continue  # Piston ignores frames of other types
                if kind != "init":
                    await session.close(CLOSE_NOT_INITIALIZED)
                params = v2.interactive_params(frame)
                session.audit.describe()
                try:
                    filled = await self.admission.cap(caller_of(session.websocket), params)
                except HttpError as exc:
                    self.metrics.job_finished("rejected")
                    await session.fail(exc.message)
                return params, filled
        await session.close(CLOSE_INIT_TIMEOUT)

    async def _start(
        self,
        session: _Session,
        client: PistonClient,
        params: dict[str, Any],
        filled: dict[str, int],
    ) -> tuple[InteractiveJob, JobStarted]:
        """Start the job; a key's filled-in limit above a runtime's own is lowered and the
        start tried again (:func:`~pistond.gateway.keylimits.relaxed`)."""
        while True:
            job = client.start_job_request(params, event_buffer=NOTIFICATION_BUFFER)
            try:
                started = await job.start()
            except ConnectionLost as exc:
                raise DaemonUnavailable(str(exc)) from None
            except PistondError as exc:
                await job.aclose()
                text = exc.message or INTERNAL
                if exc.code is ErrorCode.INVALID_PARAMS and relaxed(params, filled, text):
                    continue
                self.metrics.job_finished("rejected")
                await session.fail(text)
            return job, started

    async def _run_job(
        self, session: _Session, params: dict[str, Any], filled: dict[str, int]
    ) -> None:
        async with self.daemon.open_client() as client:
            job, started = await self._start(session, client, params, filled)
            session.audit.runtime(started.language, started.version)
            try:
                await session.send(
                    {"type": "runtime", "language": started.language, "version": started.version}
                )
                try:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._pump_events, session, job)
                        await self._read_frames(session, job)
                except BaseExceptionGroup as group:
                    raise sole_exception(group) from None
            finally:
                await job.aclose()

    async def _read_frames(self, session: _Session, job: InteractiveJob) -> None:
        while True:
            frame = await session.receive()
            kind = None if frame is None else frame.get("type")
            if frame is None:
                continue
            if kind == "init":
                await session.close(CLOSE_ALREADY_INITIALIZED)
            elif kind == "data":
                await self._write(session, job, frame)
            elif kind == "signal":
                name = frame.get("signal")
                if not isinstance(name, str) or name not in v2.SIGNAL_NAMES:
                    await session.close(CLOSE_INVALID_SIGNAL)
                await self._request(session, "job.signal", job.signal(name))
            elif kind == "eof":
                await self._request(session, "job.close_stdin", job.close_stdin())

    async def _write(self, session: _Session, job: InteractiveJob, frame: dict[str, Any]) -> None:
        if frame.get("stream") != "stdin":
            await session.close(CLOSE_STDIN_ONLY)
        data = frame.get("data")
        if not isinstance(data, str):
            await session.fail("data must be a string")
        payload = v2.wire_text(data).encode()
        for start in range(0, len(payload), MAX_WRITE):
            await self._request(session, "job.write", job.write(payload[start : start + MAX_WRITE]))

    async def _request(self, session: _Session, method: str, request: Awaitable[None]) -> None:
        """Await a ``job.*`` request; a job that already ended is not an error."""
        try:
            await request
        except ConnectionLost as exc:
            raise DaemonUnavailable(str(exc)) from None
        except PistondError as exc:
            if exc.code in _ENDED:
                logger.debug("%s after the job ended", method)
                return
            if method == "job.signal" and exc.code is ErrorCode.INVALID_PARAMS:
                logger.info("daemon cannot deliver a signal: %s", exc.message)
                return
            await session.fail(exc.message or INTERNAL)

    async def _pump_events(self, session: _Session, job: InteractiveJob) -> None:
        try:
            while (event := await job.next_event()) is not None:
                if isinstance(event, JobStage):
                    await session.send({"type": "stage", "stage": event.stage.value})
                elif isinstance(event, JobOutput):
                    if event.stream in ("stdout", "stderr"):
                        text = session.decode(event.stream, event.data)
                        if text:
                            await session.send(
                                {"type": "data", "stream": event.stream, "data": text}
                            )
                elif isinstance(event, JobExit):
                    await self._flush(session)
                    session.audit.exit(event)
                    session.last_status = None if event.status is None else event.status.value
                    await session.send(v2.exit_frame(event))
                else:
                    await self._done(session, event)
        except NotificationOverflow as exc:
            logger.warning("job output came faster than the client read it: %s", exc)
            await session.fail(OUTPUT_NOT_READ)
        except (ConnectionLost, InvalidParams) as exc:
            logger.warning("job event stream ended: %s", exc)
        await session.fail(DAEMON_UNAVAILABLE)

    async def _flush(self, session: _Session) -> None:
        for stream in list(session.decoders):
            text = session.decode(stream, b"", final=True)
            if text:
                await session.send({"type": "data", "stream": stream, "data": text})
        session.decoders.clear()

    async def _done(self, session: _Session, done: JobDone) -> None:
        error = done.error
        if isinstance(error, dict):
            self.metrics.job_finished("error")
            text = error.get("message")
            await session.fail(text if isinstance(text, str) and text else INTERNAL)
        self.metrics.job_finished(session.last_status)
        await session.close(CLOSE_JOB_COMPLETED)


async def _deny(websocket: WebSocket, status: int, text: str, headers: dict[str, str]) -> None:
    """Refuse the handshake with an HTTP answer."""
    with contextlib.suppress(*_SEND_ERRORS):
        await websocket.send_denial_response(
            JSONResponse({"message": text}, status_code=status, headers=headers)
        )
