"""The gateway's HTTP server: accept loops, one contained task per connection, a supervisor.

Hypercorn speaks HTTP/1.1 and WebSocket for each connection (its per-connection
``TCPServer``); this module owns everything around it, because a public server must survive
what any one client sends:

- every connection runs behind a :class:`~pistond.gateway.stream.GuardedStream` (request
  framing checked before hypercorn parses it, head/body/idle deadlines);
- nothing a connection raises leaves its task: the error is logged with an incident id and
  that connection is closed, the others carry on (hypercorn 0.18 lets one connection's
  protocol error end its whole server, pgjones/hypercorn#225);
- each accept loop runs under a supervisor that restarts it, with a growing pause, if it ever
  fails or returns;
- connections are capped in all and per client address: beyond a cap the connection gets a
  503 (the gateway is full) or 429 (this client holds its share) with ``Retry-After`` and is
  closed, before any of its bytes is parsed.

Shutdown follows hypercorn's: stop accepting, let idle connections close, give the rest
``graceful_timeout`` seconds, then cancel them.
"""

from __future__ import annotations

import logging
import math
import uuid
from typing import TYPE_CHECKING, Any, Final

import attrs
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.events import Updated
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.utils import repr_socket_addr, wrap_app

from pistond.gateway.fairness import RETRY_AFTER_SECONDS, Full, Places
from pistond.gateway.guard import Refusal
from pistond.gateway.stream import ConnectionLimits, GuardedStream, refusal_response
from pistond.rpc.server import accept_retrying

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from hypercorn.events import Event
    from hypercorn.typing import AppWrapper

logger = logging.getLogger(__name__)

RESTART_BACKOFF: Final = (0.1, 5.0)
"""First and longest pause before a failed accept loop is restarted."""
LISTEN_BACKLOG: Final = 1024
MAX_REFUSING: Final = 64
"""Refused connections answered at once; beyond that they are closed without an answer."""
REFUSE_TIMEOUT: Final = 2.0
"""Seconds a refused connection may take to receive its answer."""


@attrs.frozen
class ServerSettings:
    """How the gateway serves HTTP."""

    limits: ConnectionLimits = attrs.field(factory=ConnectionLimits)
    """Deadlines and the head size of every connection."""
    websocket_max_message_size: int = 1024 * 1024
    """Largest WebSocket message, in bytes (more: close 1009)."""
    graceful_timeout: float = 10.0
    """Seconds open connections get to finish after shutdown starts."""
    max_connections: int = 1024
    """Connections open at once; 0: no cap."""
    max_connections_per_client: int = 256
    """Connections open at once from one client address; 0: no cap."""


def hypercorn_config(settings: ServerSettings) -> HypercornConfig:
    """Hypercorn's per-connection settings: no server header, no access log, our deadlines.

    The guarded stream owns every read deadline (keep-alive included), so hypercorn's own
    keep-alive timer only closes idle connections at shutdown.
    """
    config = HypercornConfig()
    config.include_server_header = False
    config.keep_alive_timeout = math.inf
    config.h11_max_incomplete_size = settings.limits.max_head_size + 1024
    config.websocket_max_message_size = settings.websocket_max_message_size
    config.graceful_timeout = settings.graceful_timeout
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    return config


def open_listeners(binds: Sequence[str]) -> list[trio.SocketListener]:
    """Listening sockets for ``host:port``, ``unix:/path`` or ``fd://N`` binds (hypercorn's forms).

    Raises:
        OSError: an address cannot be bound.
    """
    config = HypercornConfig()
    config.bind = list(binds)
    sockets = config.create_sockets()
    listeners = []
    for sock in sockets.insecure_sockets:
        sock.listen(LISTEN_BACKLOG)
        listeners.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
    return listeners


def listener_url(listener: trio.SocketListener) -> str:
    """``http://host:port`` of a listener (the port the kernel chose, for port 0)."""
    sock = listener.socket
    return "http://" + repr_socket_addr(sock.family, sock.getsockname())


class _ConnectionServer(TCPServer):
    """Hypercorn's connection server, telling the guarded stream when a response is done.

    When reading ends (the client left, or the guarded stream ended the connection after a
    refusal or the keep-alive timeout), the connection closes at once: hypercorn alone would
    keep it until its keep-alive timer fires, which the guarded stream replaces.
    """

    def __init__(
        self,
        app: AppWrapper,
        config: HypercornConfig,
        context: WorkerContext,
        stream: GuardedStream,
    ) -> None:
        super().__init__(app, config, context, {}, stream)  # type: ignore[arg-type]  # a Stream, as hypercorn uses it
        self.guarded = stream

    async def protocol_send(self, event: Event) -> None:
        await super().protocol_send(event)
        if isinstance(event, Updated) and event.idle:
            self.guarded.answered()

    async def _read_data(self) -> None:
        await super()._read_data()
        await self.idle_task.stop()
        with trio.CancelScope(shield=True):
            await self._close()


def _client_address(stream: trio.SocketStream) -> str:
    """The client's IP address (the key of its per-client places)."""
    try:
        peer = stream.socket.getpeername()
    except OSError:
        return "?"
    if isinstance(peer, tuple):
        return str(peer[0])
    return str(peer) or "unix"


@attrs.define(eq=False)
class _Server:
    app: AppWrapper
    settings: ServerSettings
    config: HypercornConfig
    context: WorkerContext
    connections: trio.Nursery
    places: Places = attrs.field(init=False)
    refusing: int = attrs.field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        self.places = Places(
            "connections",
            total=self.settings.max_connections,
            per_client=self.settings.max_connections_per_client,
        )

    def admit(self, stream: trio.SocketStream) -> None:
        """Serve an accepted connection, or refuse it when its place is not free."""
        client = _client_address(stream)
        try:
            self.places.take(client)
        except Full as full:
            if self.refusing >= MAX_REFUSING:
                stream.socket.close()
                return
            self.refusing += 1
            self.connections.start_soon(self.refuse_connection, stream, client, full)
            return
        self.connections.start_soon(self.serve_connection, stream, client)

    async def serve_connection(self, stream: trio.SocketStream, client: str) -> None:
        """Serve one client; whatever it causes stays in this task."""
        guarded = GuardedStream(stream, self.settings.limits, client)
        try:
            await _ConnectionServer(self.app, self.config, self.context, guarded).run()
        except* Exception as group:
            logger.error(
                "connection from %s failed (incident %s); it is closed, the gateway serves on",
                client,
                uuid.uuid4().hex[:12],
                exc_info=group,
            )
        finally:
            self.places.give_back(client)
            await trio.aclose_forcefully(stream)

    async def refuse_connection(self, stream: trio.SocketStream, client: str, full: Full) -> None:
        """Answer 503 or 429 and close; what the client sent is read and dropped meanwhile."""
        logger.warning("refused a connection from %s: %s", client, full.message)
        answer = refusal_response(
            Refusal(full.status, full.message, (("Retry-After", str(RETRY_AFTER_SECONDS)),))
        )
        try:
            with trio.move_on_after(REFUSE_TIMEOUT):
                await stream.send_all(answer)
                await stream.send_eof()
                while await stream.receive_some(64 * 1024):
                    pass  # closing with unread bytes would reset the answer away
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            logger.debug("refused client %s left first", client)
        finally:
            self.refusing -= 1
            await trio.aclose_forcefully(stream)

    async def accept_forever(self, listener: trio.SocketListener) -> None:
        """Run the accept loop of ``listener``, restarting it whenever it fails or returns."""
        pause = RESTART_BACKOFF[0]
        while True:
            try:
                await self._accept(listener)
                logger.error("the accept loop returned; restarting it in %.1f s", pause)
            except Exception:
                logger.error(
                    "the accept loop failed; restarting it in %.1f s", pause, exc_info=True
                )
            await trio.sleep(pause)
            pause = min(pause * 2, RESTART_BACKOFF[1])

    async def _accept(self, listener: trio.SocketListener) -> None:
        while True:
            self.admit(await accept_retrying(listener))


async def serve_gateway(
    app: Any,
    listeners: Sequence[trio.SocketListener],
    settings: ServerSettings,
    *,
    shutdown_trigger: Callable[[], Awaitable[object]] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the ASGI ``app`` on ``listeners`` until ``shutdown_trigger`` returns (or forever).

    Args:
        app: the ASGI application.
        listeners: listening TCP (or Unix) sockets; closed when this returns.
        settings: deadlines and sizes.
        shutdown_trigger: awaited; when it returns, the graceful shutdown starts.
        task_status: reports the listeners' URLs once accepting.

    Resource handling:
        Each connection lives in its own task in a nursery that outlives the accept loops, so
        open connections can finish within ``graceful_timeout`` once accepting stopped.

    Error handling:
        Out-of-resource accept errors (EMFILE, ENFILE, ENOMEM, ENOBUFS) pause the loop briefly
        (:func:`~pistond.rpc.server.accept_retrying`); any other failure of an accept loop
        restarts it. A connection's failure closes that connection only.
    """
    config = hypercorn_config(settings)
    context = WorkerContext(None)
    wrapped = wrap_app(app, config.wsgi_max_body_size, "asgi")
    async with trio.open_nursery() as connections:
        server = _Server(wrapped, settings, config, context, connections)
        async with trio.open_nursery() as accepting:
            for listener in listeners:
                accepting.start_soon(server.accept_forever, listener)
            task_status.started([listener_url(listener) for listener in listeners])
            if shutdown_trigger is None:
                await trio.sleep_forever()
            await shutdown_trigger()
            accepting.cancel_scope.cancel()
        for listener in listeners:
            await listener.aclose()
        await context.terminated.set()
        connections.cancel_scope.deadline = trio.current_time() + settings.graceful_timeout
