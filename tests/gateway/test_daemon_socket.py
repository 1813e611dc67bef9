"""pistond.gateway.daemon_socket: one typed connection per call; failures: DaemonUnavailable."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import trio

from pistond.client import PistonClient
from pistond.errors import InvalidParams
from pistond.gateway.daemon_socket import DaemonSocket
from pistond.gateway.errors import DaemonUnavailable
from pistond.rpc.server import serve_rpc

if TYPE_CHECKING:
    from pistond.rpc.connection import Peer


async def _listen(path: Path) -> trio.SocketListener:
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await sock.bind(str(path))
    sock.listen(8)
    return trio.SocketListener(sock)


async def test_daemon_missing_socket_is_unavailable(tmp_path: Path) -> None:
    """A socket that does not exist raises DaemonUnavailable, not OSError."""
    with trio.fail_after(5), pytest.raises(DaemonUnavailable):
        await DaemonSocket(tmp_path / "missing.sock").run(PistonClient.runtimes)


async def test_daemon_dropped_connection_is_unavailable() -> None:
    """A daemon that closes the connection before answering raises DaemonUnavailable."""
    with tempfile.TemporaryDirectory(prefix="gw-", dir="/tmp") as directory:
        path = Path(directory) / "drop.sock"
        listener = await _listen(path)

        async def drop(stream: trio.SocketStream) -> None:
            await stream.receive_some(1)
            await stream.aclose()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, drop, [listener])
            with trio.fail_after(5), pytest.raises(DaemonUnavailable):
                await DaemonSocket(path).run(PistonClient.runtimes)
            nursery.cancel_scope.cancel()


async def test_daemon_error_reply_is_raised_unwrapped() -> None:
    """An error reply is raised as its PistondError subclass, not in an exception group."""

    async def dispatcher(method: str, params: dict[str, object], peer: Peer) -> object:
        raise InvalidParams(f"{method} refused")

    with tempfile.TemporaryDirectory(prefix="gw-", dir="/tmp") as directory:
        path = Path(directory) / "rpc.sock"
        listener = await _listen(path)
        async with trio.open_nursery() as nursery:
            await nursery.start(
                lambda task_status: serve_rpc(
                    [listener], dispatcher, max_message_size=1 << 20, task_status=task_status
                )
            )
            with trio.fail_after(5), pytest.raises(InvalidParams, match="ping refused"):
                await DaemonSocket(path).run(PistonClient.ping)
            nursery.cancel_scope.cancel()
