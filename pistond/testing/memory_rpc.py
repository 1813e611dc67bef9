"""An in-memory RPC client and server pair, so API tests need no socket.

Example::

    async with open_memory_rpc(api) as client:
        assert (await client.call("ping"))["protocol"] == 1
"""

from __future__ import annotations

import os
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import trio
import trio.testing

from pistond.rpc.client import RpcClient, sole_exception
from pistond.rpc.connection import DEFAULT_MAX_IN_FLIGHT, Connection, PeerCredentials
from pistond.rpc.framing import DEFAULT_MAX_MESSAGE_SIZE

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from pistond.rpc.connection import Dispatcher


def current_credentials() -> PeerCredentials:
    """This process's pid, uid and gid: what SO_PEERCRED would report for a local client."""
    return PeerCredentials(pid=os.getpid(), uid=os.getuid(), gid=os.getgid())


@asynccontextmanager
async def open_memory_rpc(
    dispatcher: Dispatcher,
    credentials: PeerCredentials | None = None,
    *,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
) -> AsyncIterator[RpcClient]:
    """A client connected to ``dispatcher`` through a trio memory stream pair.

    The server side is a real :class:`~pistond.rpc.connection.Connection` (the same framing,
    dispatch and error handling as over a socket) whose peer has ``credentials``
    (default: this process's). Leaving the block closes both ends and cancels every task the
    dispatcher started in the peer's nursery. An error raised in the block leaves it as
    itself, as with a socket client.
    """
    client_stream, server_stream = trio.testing.memory_stream_pair()
    server = Connection(
        server_stream,
        credentials=current_credentials() if credentials is None else credentials,
        dispatcher=dispatcher,
        max_message_size=max_message_size,
        max_in_flight=max_in_flight,
    )
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run)
            try:
                async with RpcClient.from_stream(
                    client_stream, max_message_size=max_message_size
                ) as client:
                    yield client
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise sole_exception(group) from None
