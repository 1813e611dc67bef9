"""The gateway's way to pistond: one RPC connection per HTTP request or WebSocket session.

A connection per request keeps the gateway stateless and ties a job's life to its request:
when the HTTP client goes away the request is cancelled, its connection closes, and the daemon
kills the job. Connection failures become :class:`DaemonUnavailable`; error replies stay
:class:`~pistond.errors.PistondError`.
"""

from __future__ import annotations

import logging
import os
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import attrs
import trio

from pistond.errors import PistondError
from pistond.gateway.errors import DaemonUnavailable
from pistond.rpc.client import RpcClient

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

logger = logging.getLogger(__name__)

_CONNECTION_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)
"""How a broken connection shows (ConnectionLost is a BrokenResourceError)."""


@attrs.frozen
class Daemon:
    """The daemon's RPC socket, as the gateway reaches it."""

    socket: Path

    @asynccontextmanager
    async def open_session(self) -> AsyncIterator[RpcClient]:
        """Open one RPC connection for the duration of the block.

        Exceptions raised in the block leave it wrapped in an exception group (the client
        runs its reader in a nursery); :meth:`call` unwraps for single calls.

        Raises:
            DaemonUnavailable: the socket cannot be reached.
        """
        try:
            stream = await trio.open_unix_socket(os.fspath(self.socket))
        except OSError as exc:
            logger.warning("pistond RPC socket unavailable: %s", exc.strerror or exc)
            raise DaemonUnavailable("the execution daemon is unavailable") from exc
        async with RpcClient.from_stream(stream) as client:
            yield client

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        """Call one method on a fresh connection and return its result.

        Raises:
            PistondError: the daemon answered with an error.
            DaemonUnavailable: the daemon could not be reached or the connection broke.
        """
        result: Any = None
        error: Exception | None = None
        async with self.open_session() as client:
            try:
                result = await client.call(method, params)
            except _CONNECTION_ERRORS as exc:
                logger.warning("pistond RPC connection broke during %s: %r", method, exc)
                error = DaemonUnavailable("the execution daemon is unavailable")
            except PistondError as exc:
                error = exc
        if error is not None:
            raise error
        return result
