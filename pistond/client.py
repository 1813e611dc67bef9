"""The public Python client of pistond: typed methods over the RPC socket, async and sync.

Async (trio)::

    async with open_client() as client:
        result = await client.execute("python", "3.x", ["print('hi')"])
        print(result.run.stdout)

        async with client.start_job("python", "*", ["print(input())"]) as job:
            await job.write(b"hello\\n")
            await job.close_stdin()
            async for event in job.events():
                print(event)

Synchronous, for scripts (a trio loop runs in a background thread)::

    with SyncClient() as client:
        print(client.runtimes())

The socket is ``socket_path``, else ``$PISTON_SOCKET``, else ``/run/pistond/pistond.sock``.
Errors from the daemon are raised as the :mod:`pistond.errors` class of their code; a lost
connection raises :class:`~pistond.rpc.connection.ConnectionLost` in every pending call.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING, Any, Final, Self, TypeVar

import attrs
import trio

from pistond.config import DEFAULT_SOCKET
from pistond.convert import structure_or_raise
from pistond.errors import JobNotFound, PistondError
from pistond.models import (
    JobDone,
    JobEvent,
    JobExit,
    JobOutput,
    JobResult,
    JobStage,
    JobStarted,
    PackageInfo,
    PackageRef,
    PingResult,
    RuntimeInfo,
    StatusResult,
)
from pistond.rpc.client import DEFAULT_SUBSCRIPTION_BUFFER, RpcClient, open_rpc_client
from pistond.rpc.connection import ConnectionLost
from pistond.rpc.framing import DEFAULT_MAX_MESSAGE_SIZE

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable

    from pistond.rpc.client import Subscription
    from pistond.rpc.messages import Notification

__all__ = [
    "DEFAULT_SOCKET",
    "FileInput",
    "InteractiveJob",
    "JobDone",
    "JobEvent",
    "JobExit",
    "JobOutput",
    "JobStage",
    "PistonClient",
    "SyncClient",
    "SyncInteractiveJob",
    "default_socket_path",
    "event_from_notification",
    "execute_params",
    "open_client",
]

T = TypeVar("T")

KILL_TIMEOUT: Final = 5.0
"""Seconds leaving a job's block may spend killing a job that is still running."""

FileInput = str | bytes | Mapping[str, Any] | tuple[str, str | bytes]
"""A submitted file: its content (str is sent as utf8 text, bytes as bin), a
``(name, content)`` pair, or a PROTOCOL.md ``File`` map."""

_EVENT_TYPES: Final[dict[str, type[JobStage | JobOutput | JobExit | JobDone]]] = {
    "job.stage": JobStage,
    "job.output": JobOutput,
    "job.exit": JobExit,
    "job.done": JobDone,
}


def default_socket_path() -> str:
    """``$PISTON_SOCKET`` if set, else the daemon's default socket."""
    return os.environ.get("PISTON_SOCKET") or DEFAULT_SOCKET


def _file_to_wire(file: FileInput) -> dict[str, Any]:
    if isinstance(file, str | bytes):
        return {"content": file}
    if isinstance(file, tuple):
        name, content = file
        return {"name": name, "content": content}
    return dict(file)


def execute_params(
    language: str,
    version: str,
    files: Sequence[FileInput],
    *,
    stdin: str | bytes | None = None,
    args: Sequence[str] = (),
    main: str | None = None,
    compile_timeout: int | None = None,
    run_timeout: int | None = None,
    compile_cpu_time: int | None = None,
    run_cpu_time: int | None = None,
    compile_memory_limit: int | None = None,
    run_memory_limit: int | None = None,
    output_max_size: int | None = None,
    compile_cache: bool | None = None,
) -> dict[str, Any]:
    """The ``execute`` / ``job.start`` params map; None values are left out.

    ``compile_cache=False`` compiles even when the daemon holds the same compile's result.
    """
    if isinstance(files, str | bytes):
        raise TypeError("files must be a sequence of files, not one file's content")
    params: dict[str, Any] = {
        "language": language,
        "version": version,
        "files": [_file_to_wire(file) for file in files],
        "args": list(args),
    }
    optional = {
        "stdin": stdin,
        "main": main,
        "compile_timeout": compile_timeout,
        "run_timeout": run_timeout,
        "compile_cpu_time": compile_cpu_time,
        "run_cpu_time": run_cpu_time,
        "compile_memory_limit": compile_memory_limit,
        "run_memory_limit": run_memory_limit,
        "output_max_size": output_max_size,
        "compile_cache": compile_cache,
    }
    params.update({key: value for key, value in optional.items() if value is not None})
    return params


def event_from_notification(notification: Notification) -> JobEvent:
    """The typed event of a ``job.*`` notification.

    Raises:
        InvalidParams: the notification does not match PROTOCOL.md.
    """
    cls = _EVENT_TYPES.get(notification.method)
    if cls is None:
        raise ValueError(f"not a job event: {notification.method!r}")
    return structure_or_raise(notification.params, cls)


@attrs.define(eq=False)
class InteractiveJob:
    """An interactive job (``job.start``), owned by the client's connection.

    Use it as an async context manager: entering starts the job, leaving kills it if it is
    still running. Events are buffered from the start (before ``job.start`` even answers);
    read them promptly with :meth:`events`: past ``event_buffer`` unread events the stream
    ends with :class:`~pistond.rpc.client.NotificationOverflow`.
    """

    _rpc: RpcClient
    _params: dict[str, Any]
    event_buffer: int = DEFAULT_SUBSCRIPTION_BUFFER
    started: JobStarted | None = attrs.field(init=False, default=None)
    done: JobDone | None = attrs.field(init=False, default=None)
    """The ``job.done`` event, once events() has delivered it."""
    _subscription: Subscription | None = attrs.field(init=False, default=None)

    @property
    def id(self) -> str:
        """The job id the daemon gave."""
        if self.started is None:
            raise RuntimeError("the job has not been started")
        return self.started.job

    async def start(self) -> JobStarted:
        """Send ``job.start`` (``async with`` does this for you).

        Raises:
            PistondError: the daemon refused the job (``invalid_params``, ``runtime_unknown``...).
        """
        if self._subscription is not None:
            raise RuntimeError("the job was already started")
        subscription = self._subscription = self._rpc.subscribe(
            "job.", max_buffer=self.event_buffer
        )
        try:
            reply = await self._rpc.call("job.start", self._params)
            self.started = structure_or_raise(reply, JobStarted)
        except BaseException:
            subscription.close()
            raise
        job_id = self.started.job
        subscription.retain(lambda notification: notification.params.get("job") == job_id)
        return self.started

    async def write(self, data: str | bytes) -> None:
        """Send bytes (str is encoded as UTF-8) to the program's stdin."""
        payload = data.encode() if isinstance(data, str) else bytes(data)
        await self._rpc.call("job.write", {"job": self.id, "data": payload})

    async def close_stdin(self) -> None:
        """Close the program's stdin (it reads end of file)."""
        await self._rpc.call("job.close_stdin", {"job": self.id})

    async def signal(self, name: str) -> None:
        """Send a signal such as ``SIGINT`` to the program's process group."""
        await self._rpc.call("job.signal", {"job": self.id, "signal": name})

    async def kill(self) -> None:
        """Kill the job; its remaining events (exit, done) still arrive."""
        await self._rpc.call("job.kill", {"job": self.id})

    async def next_event(self) -> JobEvent | None:
        """The next event, or None after ``job.done`` was delivered.

        Raises:
            NotificationOverflow: more than ``event_buffer`` events were left unread.
            ConnectionLost: the connection closed before the job was done.
        """
        if self.done is not None:
            return None
        if self._subscription is None:
            raise RuntimeError("the job has not been started")
        try:
            notification = await self._subscription.receive()
        except trio.EndOfChannel:
            return None
        event = event_from_notification(notification)
        if isinstance(event, JobDone):
            self.done = event
            self._subscription.close()
        return event

    def events(self) -> AsyncIterator[JobEvent]:
        """Iterate the job's events, in order, ending after :class:`JobDone`."""
        return _JobEvents(self)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Kill the job if it still runs, and stop receiving its events."""
        try:
            if self.started is not None and self.done is None and not self._rpc.closed:
                with trio.move_on_after(KILL_TIMEOUT) as scope:
                    scope.shield = True
                    with suppress(JobNotFound, ConnectionLost):
                        await self.kill()
        finally:
            if self._subscription is not None:
                self._subscription.close()


@attrs.define(eq=False)
class _JobEvents:
    job: InteractiveJob

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> JobEvent:
        event = await self.job.next_event()
        if event is None:
            raise StopAsyncIteration
        return event


@attrs.define(eq=False)
class PistonClient:
    """Typed methods over one RPC connection; get one from :func:`open_client`.

    Every method may raise the :class:`~pistond.errors.PistondError` subclass of the error the
    daemon answered, or :class:`~pistond.rpc.connection.ConnectionLost`.
    """

    rpc: RpcClient

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Call any method by name with a params map; returns the raw result."""
        return await self.rpc.call(method, params)

    async def ping(self) -> PingResult:
        """The daemon's version and protocol version."""
        return structure_or_raise(await self.call("ping"), PingResult)

    async def status(self) -> StatusResult:
        """Daemon health: uptime, job counters, sandbox capabilities, default limits."""
        return structure_or_raise(await self.call("status"), StatusResult)

    async def runtimes(self) -> list[RuntimeInfo]:
        """Installed runtimes."""
        return structure_or_raise(await self.call("runtimes"), list[RuntimeInfo])

    async def execute(
        self, language: str, version: str, files: Sequence[FileInput], **options: Any
    ) -> JobResult:
        """Run a program to completion (PROTOCOL.md ``execute``).

        Args:
            language: language name or alias.
            version: semver range; ``*`` for the newest installed.
            files: the submitted files; the first text file is the main one unless ``main``.
            **options: ``stdin``, ``args``, ``main`` and the limits of :func:`execute_params`.
        """
        params = execute_params(language, version, files, **options)
        return await self.execute_request(params)

    async def execute_request(self, params: Mapping[str, Any]) -> JobResult:
        """``execute`` with a params map made elsewhere (a request translated from another API).

        The daemon validates the map as it validates every request.
        """
        return structure_or_raise(await self.call("execute", dict(params)), JobResult)

    def start_job(
        self,
        language: str,
        version: str,
        files: Sequence[FileInput],
        *,
        event_buffer: int = DEFAULT_SUBSCRIPTION_BUFFER,
        **options: Any,
    ) -> InteractiveJob:
        """An interactive job, started by ``async with`` (or :meth:`InteractiveJob.start`).

        Takes the arguments of :meth:`execute`.
        """
        params = execute_params(language, version, files, **options)
        return self.start_job_request(params, event_buffer=event_buffer)

    def start_job_request(
        self, params: Mapping[str, Any], *, event_buffer: int = DEFAULT_SUBSCRIPTION_BUFFER
    ) -> InteractiveJob:
        """An interactive job from a params map made elsewhere (see :meth:`execute_request`)."""
        return InteractiveJob(self.rpc, dict(params), event_buffer)

    async def packages(self) -> list[PackageInfo]:
        """Packages available locally or from the index, and whether each is installed."""
        return structure_or_raise(await self.call("packages"), list[PackageInfo])

    async def install_package(
        self,
        language: str,
        version: str,
        *,
        progress: Callable[[str], object] | None = None,
    ) -> PackageRef:
        """Install a package (root or the admin group only).

        Args:
            language: the package name (``python``, ``gcc``...).
            version: a semver range.
            progress: called with each build line the daemon reports, as it comes.
        """
        params = {"language": language, "version": version}
        if progress is None:
            return structure_or_raise(await self.call("packages.install", params), PackageRef)
        reply: Any = None
        error: PistondError | None = None
        with self.rpc.subscribe(
            "packages.progress",
            accept=lambda n: (
                n.params.get("language") == language and n.params.get("version") == version
            ),
        ) as subscription:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_report_progress, subscription, progress)
                try:
                    reply = await self.call("packages.install", params)
                except PistondError as exc:
                    error = exc  # raised below, outside the nursery: no exception group
                nursery.cancel_scope.cancel()
        if error is not None:
            raise error
        return structure_or_raise(reply, PackageRef)

    async def uninstall_package(self, language: str, version: str) -> PackageRef:
        """Uninstall a package (root or the admin group only)."""
        params = {"language": language, "version": version}
        return structure_or_raise(await self.call("packages.uninstall", params), PackageRef)


async def _report_progress(subscription: Subscription, progress: Callable[[str], object]) -> None:
    async for notification in subscription:
        line = notification.params.get("line")
        if isinstance(line, str):
            progress(line)


@asynccontextmanager
async def open_client(
    socket_path: str | os.PathLike[str] | None = None,
    *,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
) -> AsyncIterator[PistonClient]:
    """Connect to the daemon; the connection closes when the block exits.

    Raises:
        OSError: the socket cannot be reached.
    """
    path = default_socket_path() if socket_path is None else socket_path
    async with open_rpc_client(path, max_message_size=max_message_size) as rpc:
        yield PistonClient(rpc)


class SyncClient:
    """A blocking facade over :class:`PistonClient` for scripts.

    Entering starts a trio loop in a background thread and connects; every method blocks until
    the daemon answers. Callbacks (``progress``) run in that background thread.

    Args:
        socket_path: as for :func:`open_client`.
    """

    def __init__(
        self,
        socket_path: str | os.PathLike[str] | None = None,
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        self._socket_path = socket_path
        self._max_message_size = max_message_size
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._client: PistonClient | None = None
        self._stop: trio.Event | None = None

    def __enter__(self) -> Self:
        ready: queue.SimpleQueue[BaseException | None] = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._thread_main, args=(ready,), name="pistond-client", daemon=True
        )
        self._thread.start()
        error = ready.get()
        if error is not None:
            self._thread.join()
            raise error
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Disconnect and stop the background thread."""
        if self._thread is None:
            return
        if self._stop is not None and self._token is not None:
            with suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join()
        self._thread = None

    def _thread_main(self, ready: queue.SimpleQueue[BaseException | None]) -> None:
        try:
            trio.run(self._serve, ready)
        except BaseException as exc:  # reported to the caller of __enter__ if not yet ready
            ready.put(exc)

    async def _serve(self, ready: queue.SimpleQueue[BaseException | None]) -> None:
        self._stop = trio.Event()
        async with open_client(self._socket_path, max_message_size=self._max_message_size) as c:
            self._client = c
            self._token = trio.lowlevel.current_trio_token()
            ready.put(None)
            await self._stop.wait()

    def _run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        if self._token is None or self._thread is None:
            raise RuntimeError("SyncClient is not connected: use it in a with block")
        return trio.from_thread.run(fn, *args, trio_token=self._token)

    @property
    def _async(self) -> PistonClient:
        if self._client is None:
            raise RuntimeError("SyncClient is not connected: use it in a with block")
        return self._client

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """As :meth:`PistonClient.call`."""
        return self._run(self._async.call, method, params)

    def ping(self) -> PingResult:
        """As :meth:`PistonClient.ping`."""
        return self._run(self._async.ping)

    def status(self) -> StatusResult:
        """As :meth:`PistonClient.status`."""
        return self._run(self._async.status)

    def runtimes(self) -> list[RuntimeInfo]:
        """As :meth:`PistonClient.runtimes`."""
        return self._run(self._async.runtimes)

    def execute(
        self, language: str, version: str, files: Sequence[FileInput], **options: Any
    ) -> JobResult:
        """As :meth:`PistonClient.execute`."""
        client = self._async

        async def run() -> JobResult:
            return await client.execute(language, version, files, **options)

        return self._run(run)

    def start_job(
        self, language: str, version: str, files: Sequence[FileInput], **options: Any
    ) -> SyncInteractiveJob:
        """As :meth:`PistonClient.start_job`; use the result in a ``with`` block."""
        return SyncInteractiveJob(self, self._async.start_job(language, version, files, **options))

    def packages(self) -> list[PackageInfo]:
        """As :meth:`PistonClient.packages`."""
        return self._run(self._async.packages)

    def install_package(
        self, language: str, version: str, *, progress: Callable[[str], object] | None = None
    ) -> PackageRef:
        """As :meth:`PistonClient.install_package`."""
        client = self._async

        async def run() -> PackageRef:
            return await client.install_package(language, version, progress=progress)

        return self._run(run)

    def uninstall_package(self, language: str, version: str) -> PackageRef:
        """As :meth:`PistonClient.uninstall_package`."""
        return self._run(self._async.uninstall_package, language, version)


@attrs.define(eq=False)
class SyncInteractiveJob:
    """The blocking form of :class:`InteractiveJob`; entering its ``with`` block starts it."""

    _client: SyncClient
    job: InteractiveJob

    def __enter__(self) -> Self:
        self._client._run(self.job.start)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._client._run(self.job.aclose)

    @property
    def id(self) -> str:
        """The job id the daemon gave."""
        return self.job.id

    def write(self, data: str | bytes) -> None:
        """As :meth:`InteractiveJob.write`."""
        self._client._run(self.job.write, data)

    def close_stdin(self) -> None:
        """As :meth:`InteractiveJob.close_stdin`."""
        self._client._run(self.job.close_stdin)

    def signal(self, name: str) -> None:
        """As :meth:`InteractiveJob.signal`."""
        self._client._run(self.job.signal, name)

    def kill(self) -> None:
        """As :meth:`InteractiveJob.kill`."""
        self._client._run(self.job.kill)

    def events(self) -> Iterator[JobEvent]:
        """The job's events, blocking for each, ending after :class:`JobDone`."""
        while True:
            event = self._client._run(self.job.next_event)
            if event is None:
                return
            yield event
