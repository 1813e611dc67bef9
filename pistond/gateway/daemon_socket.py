"""The daemon's RPC socket as the gateway reaches it: one typed client connection per request.

A connection per request keeps the gateway stateless and ties a job's life to its request:
when the HTTP client goes away the request is cancelled, its connection closes, and the daemon
kills the job. The gateway speaks through :class:`~pistond.client.PistonClient`, so replies
arrive as the records of :mod:`pistond.models`. Failing to reach the daemon, or losing the
connection, becomes :class:`DaemonUnavailable`; error replies stay
:class:`~pistond.errors.PistondError`.
"""

from __future__ import annotations

import logging
import os
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, TypeVar

import attrs
import trio

from pistond.client import PistonClient
from pistond.gateway.errors import DaemonUnavailable
from pistond.rpc.client import RpcClient
from pistond.rpc.connection import ConnectionLost

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
    from pathlib import Path

logger = logging.getLogger(__name__)

T = TypeVar("T")

UNAVAILABLE: str = "the execution daemon is unavailable"


@attrs.frozen
class DaemonSocket:
    """The daemon's RPC socket."""

    path: Path

    @asynccontextmanager
    async def open_client(self) -> AsyncIterator[PistonClient]:
        """A client on a new connection for the duration of the block.

        Raises:
            DaemonUnavailable: the socket cannot be reached.
        """
        try:
            stream = await trio.open_unix_socket(os.fspath(self.path))
        except OSError as exc:
            logger.warning("pistond RPC socket unavailable: %s", exc.strerror or exc)
            raise DaemonUnavailable(UNAVAILABLE) from exc
        async with RpcClient.from_stream(stream) as rpc:
            yield PistonClient(rpc)

    async def run(self, call: Callable[[PistonClient], Awaitable[T]]) -> T:
        """``await call(client)`` on a new connection, and its result.

        Raises:
            PistondError: the daemon answered with an error.
            DaemonUnavailable: the daemon could not be reached or the connection broke.
        """
        async with self.open_client() as client:
            try:
                return await call(client)
            except ConnectionLost as exc:
                logger.warning("pistond RPC connection broke: %s", exc)
                raise DaemonUnavailable(UNAVAILABLE) from exc
