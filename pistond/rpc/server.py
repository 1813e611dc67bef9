"""The RPC server: accept loops over trio listeners, one :class:`Connection` per peer.

This layer wraps :class:`trio.SocketListener` objects (Unix stream sockets) and exposes
:func:`serve_rpc`, shaped like :func:`trio.serve_listeners`: it runs until cancelled, and each
accepted connection is served in ``handler_nursery`` by its own
:class:`~pistond.rpc.connection.Connection`.
"""

from __future__ import annotations

import errno
import logging
from typing import TYPE_CHECKING, Final, NoReturn

import trio

from pistond.rpc.connection import (
    DEFAULT_MAX_IN_FLIGHT,
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


async def serve_rpc(
    listeners: Sequence[trio.abc.Listener[trio.SocketStream]],
    dispatcher: Dispatcher,
    *,
    max_message_size: int,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
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
        handler_nursery: where connections run; by default a nursery inside this call. Give
            your own to let connections finish (with a deadline) after accepting stops.
        task_status: reports the listeners once every accept loop runs.

    Resource handling:
        Each connection reads its peer's SO_PEERCRED once, then lives in its own nursery in
        ``handler_nursery``; closing it cancels every task its requests started there.

    Error handling:
        Out-of-resource accept errors (EMFILE, ENFILE, ENOMEM, ENOBUFS) are logged and retried
        after a short sleep; other accept errors propagate. An exception escaping one
        connection is logged with an incident id and never disturbs the others.
    """
    async with trio.open_nursery() as nursery:
        connections = nursery if handler_nursery is None else handler_nursery
        for listener in listeners:
            nursery.start_soon(
                _accept_loop, listener, connections, dispatcher, max_message_size, max_in_flight
            )
        task_status.started(listeners)
        await trio.sleep_forever()
    raise AssertionError("unreachable: sleep_forever returned")  # pragma: no cover


async def _accept_loop(
    listener: trio.abc.Listener[trio.SocketStream],
    connections: trio.Nursery,
    dispatcher: Dispatcher,
    max_message_size: int,
    max_in_flight: int,
) -> NoReturn:
    async with listener:
        while True:
            try:
                stream = await listener.accept()
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
                continue
            connections.start_soon(
                _serve_connection, stream, dispatcher, max_message_size, max_in_flight
            )


async def _serve_connection(
    stream: trio.SocketStream,
    dispatcher: Dispatcher,
    max_message_size: int,
    max_in_flight: int,
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
            max_message_size=max_message_size,
            max_in_flight=max_in_flight,
        )
        await connection.run()
    except Exception:
        logger.error("connection failed (incident %s)", new_incident_id(), exc_info=True)
        await trio.aclose_forcefully(stream)
