"""serve_rpc over real Unix sockets: credentials, robustness to any bytes, accept errors."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import sys
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pistond.rpc.client import open_rpc_client
from pistond.rpc.framing import pack
from pistond.rpc.server import serve_rpc

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from pistond.rpc.connection import Peer


async def dispatcher(method: str, params: dict[str, Any], peer: Peer) -> Any:
    if method == "whoami":
        return {
            "pid": peer.credentials.pid,
            "uid": peer.credentials.uid,
            "gid": peer.credentials.gid,
        }
    if method == "sleep":
        await trio.sleep(params["seconds"])
        return "slept"
    return {"method": method, "params": params}


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A world-readable temporary directory (a dropped-privilege child must reach the socket)."""
    directory = Path(tempfile.mkdtemp(prefix="pistond-rpc-"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory)


def _listen(path: Path) -> trio.SocketListener:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen()
    path.chmod(0o666)
    return trio.SocketListener(trio.socket.from_stdlib_socket(sock))


@asynccontextmanager
async def serving(path: Path, **options: Any) -> AsyncIterator[trio.Nursery]:
    async with trio.open_nursery() as nursery:
        await nursery.start(_serve, [_listen(path)], options)
        yield nursery
        nursery.cancel_scope.cancel()


async def _serve(
    listeners: list[Any], options: dict[str, Any], *, task_status: trio.TaskStatus[Any]
) -> None:
    options.setdefault("max_message_size", 4096)
    await serve_rpc(listeners, dispatcher, task_status=task_status, **options)


async def test_server_answers_and_reads_peer_credentials(socket_dir: Path) -> None:
    """A call over the socket is answered; the dispatcher sees our pid, uid and gid."""
    path = socket_dir / "s.sock"
    async with serving(path), open_rpc_client(path) as client:
        with trio.fail_after(5):
            assert await client.call("whoami") == {
                "pid": os.getpid(),
                "uid": os.getuid(),
                "gid": os.getgid(),
            }


CHILD = """
import os, socket, sys, msgpack
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(msgpack.packb([0, 1, "whoami", []]))
u = msgpack.Unpacker()
while True:
    data = s.recv(4096)
    u.feed(data)
    for reply in u:
        print(reply[3]["uid"], reply[3]["gid"], reply[3]["pid"] == os.getpid())
        sys.exit(0)
"""


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to run a client as another uid")
async def test_server_sees_other_uid(socket_dir: Path) -> None:
    """A client that runs as uid 65534 is seen as uid 65534 (SO_PEERCRED, not trust)."""
    path = socket_dir / "s.sock"
    async with serving(path):
        with trio.fail_after(20):
            process = await trio.run_process(
                [sys.executable, "-c", CHILD, str(path)],
                user=65534,
                group=65534,
                extra_groups=[],
                capture_stdout=True,
            )
    assert process.stdout.decode().split() == ["65534", "65534", "True"]


async def _send_raw(path: Path, data: bytes) -> None:
    stream = await trio.open_unix_socket(str(path))
    async with stream:
        try:
            await stream.send_all(data)
            with trio.move_on_after(0.02):
                while await stream.receive_some(65536):
                    pass
        except trio.BrokenResourceError:
            pass


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    chunks=st.lists(
        st.one_of(
            st.binary(max_size=64),
            st.builds(
                pack,
                st.lists(
                    st.one_of(
                        st.integers(-5, 2**33),
                        st.text(max_size=5),
                        st.none(),
                        st.binary(max_size=5),
                    ),
                    max_size=5,
                ),
            ),
            st.just(pack([0, 3, "ping", []])),
            st.just(b"\x94\x00\x01"),
        ),
        max_size=6,
    )
)
async def test_server_survives_random_bytes(socket_dir: Path, chunks: list[bytes]) -> None:
    """Any byte stream at the server leaves it serving: a new connection is still answered."""
    path = socket_dir / f"fuzz-{os.urandom(4).hex()}.sock"
    async with serving(path):
        with trio.fail_after(10):
            await _send_raw(path, b"".join(chunks))
            async with open_rpc_client(path) as client:
                assert await client.call("echo", {"x": 1}) == {"method": "echo", "params": {"x": 1}}
    path.unlink()


async def test_server_bad_connection_does_not_disturb_others(socket_dir: Path) -> None:
    """A peer sending garbage is dropped while a concurrent call on another connection completes."""
    path = socket_dir / "s.sock"
    async with serving(path), open_rpc_client(path) as client:
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                results: list[Any] = []

                async def slow_call() -> None:
                    results.append(await client.call("sleep", {"seconds": 0.2}))

                nursery.start_soon(slow_call)
                await _send_raw(path, b"\xc1" * 100)
                await _send_raw(path, pack([0, 1, "x", [{"s": "y" * 10_000}]]))
            assert results == ["slept"]


class FlakyListener(trio.abc.Listener[trio.SocketStream]):
    """A listener whose first accepts fail with a given errno."""

    def __init__(self, inner: trio.SocketListener, failures: int, code: int) -> None:
        self.inner = inner
        self.failures = failures
        self.code = code

    async def accept(self) -> trio.SocketStream:
        if self.failures:
            self.failures -= 1
            await trio.lowlevel.checkpoint()
            raise OSError(self.code, os.strerror(self.code))
        return await self.inner.accept()

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_server_backs_off_on_emfile(
    socket_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """EMFILE from accept is logged and retried; the server keeps serving."""
    path = socket_dir / "s.sock"
    listener = FlakyListener(_listen(path), failures=2, code=errno.EMFILE)
    async with trio.open_nursery() as nursery:
        await nursery.start(_serve, [listener], {})
        with trio.fail_after(5):
            async with open_rpc_client(path) as client:
                assert (await client.call("ping"))["method"] == "ping"
        nursery.cancel_scope.cancel()
    assert listener.failures == 0
    assert sum("EMFILE" in record.getMessage() for record in caplog.records) == 2


async def test_server_other_accept_errors_propagate(socket_dir: Path) -> None:
    """An accept error that is not about resources stops serve_rpc with that error."""
    listener = FlakyListener(_listen(socket_dir / "s.sock"), failures=1, code=errno.EBADF)
    with pytest.RaisesGroup(
        pytest.RaisesExc(OSError, check=lambda e: e.errno == errno.EBADF), flatten_subgroups=True
    ):
        async with trio.open_nursery() as nursery:
            await nursery.start(_serve, [listener], {})


async def test_server_handler_nursery_outlives_accepting(socket_dir: Path) -> None:
    """With a handler nursery, cancelling serve_rpc stops accepting but lets calls finish."""
    path = socket_dir / "s.sock"
    async with trio.open_nursery() as handlers:
        accepting = trio.CancelScope()

        async def serve(task_status: trio.TaskStatus[Any]) -> None:
            with accepting:
                await serve_rpc(
                    [_listen(path)],
                    dispatcher,
                    max_message_size=4096,
                    handler_nursery=handlers,
                    task_status=task_status,
                )

        await handlers.start(serve)
        async with open_rpc_client(path) as client:
            with trio.fail_after(5):
                async with trio.open_nursery() as calls:
                    calls.start_soon(client.call, "sleep", {"seconds": 0.2})
                    await trio.sleep(0.05)
                    accepting.cancel()
            with pytest.raises(ConnectionRefusedError):
                await trio.open_unix_socket(str(path))
        handlers.cancel_scope.cancel()


async def _open_raw(path: Path) -> trio.SocketStream:
    return await trio.open_unix_socket(str(path))


async def _closed_within(stream: trio.SocketStream, seconds: float) -> bool:
    with trio.move_on_after(seconds):
        try:
            while await stream.receive_some(4096):
                pass
        except trio.BrokenResourceError:
            pass
        return True
    return False


async def test_server_caps_connections(socket_dir: Path) -> None:
    """Beyond max_connections a connection is closed at once; a freed place serves again."""
    path = socket_dir / "s.sock"
    async with serving(path, max_connections=3):
        held = [await _open_raw(path) for _ in range(3)]
        await trio.sleep(0.1)
        extra = await _open_raw(path)
        with trio.fail_after(5):
            assert await _closed_within(extra, 2)
            for stream in held:
                assert not await _closed_within(stream, 0.01)
            await held[0].aclose()
            await trio.sleep(0.1)
            async with open_rpc_client(path) as client:
                assert await client.call("whoami") is not None
        for stream in held[1:]:
            await stream.aclose()


async def test_server_half_frames_cannot_hold_the_daemon(socket_dir: Path) -> None:
    """Hundreds of connections each holding half a frame: those over the cap are closed at
    once, the others when their frame deadline passes; then the daemon serves a new client."""
    path = socket_dir / "s.sock"
    half = pack([0, 1, "whoami", [{"padding": "x" * 200}]])[:100]
    async with serving(path, max_connections=50, frame_timeout=0.5):
        with trio.fail_after(20):
            streams = []
            for _ in range(300):
                stream = await _open_raw(path)
                with contextlib.suppress(trio.BrokenResourceError):
                    await stream.send_all(half)
                streams.append(stream)
            started = trio.current_time()
            closed = [await _closed_within(stream, 3) for stream in streams]
            assert all(closed)
            assert trio.current_time() - started < 3
            async with open_rpc_client(path) as client:
                assert await client.call("whoami") is not None
        for stream in streams:
            await stream.aclose()
