"""The RPC server: accept loops over trio listeners, one :class:`Connection` per peer.

This layer wraps :class:`trio.SocketListener` objects (Unix stream sockets) and exposes
:func:`serve_rpc`, shaped like :func:`trio.serve_listeners`: it runs until cancelled, and each
accepted connection is served in ``handler_nursery`` by its own
:class:`~pistond.rpc.connection.Connection`.
"""

from __future__ import annotations

import errno
import logging
import math
from typing import TYPE_CHECKING, Final, NoReturn

import attrs
import trio

from pistond.rpc.connection import (
    DEFAULT_FRAME_TIMEOUT,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_NOTIFICATION_BUFFER,
    Connection,
    new_incident_id,
    read_peer_credentials,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pistond.rpc.connection import Dispatcher

logger = logging.getLogger(__name__)

ACCEPT_CAPACITY_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
"""accept() failures that mean "out of resources for now": back off and retry."""
ACCEPT_BACKOFF: Final = 0.1
"""Seconds to wait after such a failure, as trio.serve_listeners does."""
REFUSAL_LOG_INTERVAL: Final = 10.0
"""Seconds between two warnings about connections refused for the connection cap."""


async def serve_rpc(
    listeners: Sequence[trio.abc.Listener[trio.SocketStream]],
    dispatcher: Dispatcher,
    *,
    max_message_size: int,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    frame_timeout: float = DEFAULT_FRAME_TIMEOUT,
    notification_buffer: int = DEFAULT_NOTIFICATION_BUFFER,
    max_connections: int = 0,
    handler_nursery: trio.Nursery | None = None,
    task_status: trio.TaskStatus[
        Sequence[trio.abc.Listener[trio.SocketStream]]
    ] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve msgpack-rpc on every listener until cancelled.

    Args:
        listeners: listening Unix stream sockets (``trio.SocketListener``); closed when this
            returns.
        dispatcher: called for each request with the peer (credentials, nursery, state).
        max_message_size: largest incoming message, in bytes.
        max_in_flight: requests handled at once per connection.
        frame_timeout: seconds a started message may take to complete.
        notification_buffer: bytes of notifications queued per connection.
        max_connections: connections served at once; 0 for no cap.
        handler_nursery: where connections run; by default a nursery inside this call. Give
            your own to let connections finish (with a deadline) after accepting stops.
        task_status: reports the listeners once every accept loop runs.

    Resource handling:
        Each connection reads its peer's SO_PEERCRED once, then lives in its own nursery in
        ``handler_nursery``; closing it cancels every task its requests started there. A
        connection beyond ``max_connections`` is closed at once (its peer sees the connection
        lost and may retry); a warning is logged at most every ``REFUSAL_LOG_INTERVAL``
        seconds.

    Error handling:
        Out-of-resource accept errors (EMFILE, ENFILE, ENOMEM, ENOBUFS) are logged and retried
        after a short sleep; other accept errors propagate. An exception escaping one
        connection is logged with an incident id and never disturbs the others.
    """
    options = ConnectionOptions(
        max_message_size=max_message_size,
        max_in_flight=max_in_flight,
        frame_timeout=frame_timeout,
        notification_buffer=notification_buffer,
    )
    served = _Served(dispatcher, options, max_connections)
    async with trio.open_nursery() as nursery:
        connections = nursery if handler_nursery is None else handler_nursery
        for listener in listeners:
            nursery.start_soon(_accept_loop, listener, connections, served)
        task_status.started(listeners)
        await trio.sleep_forever()
    raise AssertionError("unreachable: sleep_forever returned")  # pragma: no cover


@attrs.frozen
class ConnectionOptions:
    """What every served :class:`~pistond.rpc.connection.Connection` is created with."""

    max_message_size: int
    max_in_flight: int
    frame_timeout: float
    notification_buffer: int


@attrs.define(eq=False)
class _Served:
    """The connections being served, and what serving one takes."""

    dispatcher: Dispatcher
    options: ConnectionOptions
    max_connections: int
    count: int = 0
    last_refusal_log: float = -math.inf

    def admit(self, stream: trio.SocketStream) -> bool:
        """Count a new connection in, or close it when ``max_connections`` are served."""
        if self.max_connections and self.count >= self.max_connections:
            now = trio.current_time()
            if now - self.last_refusal_log >= REFUSAL_LOG_INTERVAL:
                self.last_refusal_log = now
                logger.warning(
                    "refusing connections: %d are open, the most PISTON_MAX_CONNECTIONS allows",
                    self.count,
                )
            stream.socket.close()
            return False
        self.count += 1
        return True

    async def serve(self, stream: trio.SocketStream) -> None:
        """Serve one peer; nothing it does escapes to the other connections."""
        try:
            await _serve_connection(stream, self.dispatcher, self.options)
        finally:
            self.count -= 1


async def accept_retrying(listener: trio.abc.Listener[trio.SocketStream]) -> trio.SocketStream:
    """The next connection; out-of-resource failures are logged, waited out and retried.

    Raises:
        OSError: an accept failure other than EMFILE, ENFILE, ENOMEM or ENOBUFS.
    """
    while True:
        try:
            return await listener.accept()
        except OSError as exc:
            if exc.errno not in ACCEPT_CAPACITY_ERRNOS:
                raise
            logger.error(
                "accept failed: %s (%s); retrying in %.1f s",
                errno.errorcode.get(exc.errno or 0, "?"),
                exc.strerror,
                ACCEPT_BACKOFF,
            )
            await trio.sleep(ACCEPT_BACKOFF)


async def _accept_loop(
    listener: trio.abc.Listener[trio.SocketStream],
    connections: trio.Nursery,
    served: _Served,
) -> NoReturn:
    async with listener:
        while True:
            stream = await accept_retrying(listener)
            if served.admit(stream):
                connections.start_soon(served.serve, stream)


async def _serve_connection(
    stream: trio.SocketStream, dispatcher: Dispatcher, options: ConnectionOptions
) -> None:
    """Serve one peer; nothing it does escapes to the other connections."""
    try:
        try:
            credentials = read_peer_credentials(stream.socket)
        except OSError as exc:
            logger.warning("dropping a connection without peer credentials: %s", exc)
            await trio.aclose_forcefully(stream)
            return
        logger.debug(
            "connection from pid %d uid %d gid %d",
            credentials.pid,
            credentials.uid,
            credentials.gid,
        )
        connection = Connection(
            stream,
            credentials=credentials,
            dispatcher=dispatcher,
            max_message_size=options.max_message_size,
            max_in_flight=options.max_in_flight,
            frame_timeout=options.frame_timeout,
            notification_buffer=options.notification_buffer,
        )
        await connection.run()
    except Exception:
        logger.error("connection failed (incident %s)", new_incident_id(), exc_info=True)
        await trio.aclose_forcefully(stream)
