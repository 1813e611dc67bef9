"""Gateway test fixtures: a real gateway (hypercorn, trio) on 127.0.0.1, port 0, in a thread.

The daemon behind it is chosen in one place, :func:`_daemon_socket`: the fake daemon of
``fake_daemon.py`` served with ``pistond.rpc.server.serve_rpc`` on a temporary Unix socket, or,
when ``PISTOND_TEST_DAEMON_SOCKET`` names a running pistond's socket, that daemon. Tests that
rely on the fake's scripted behaviour take the ``fake`` fixture, which skips against a real
daemon. The stack runs in its own thread with its own trio loop, so synchronous clients
(requests, aiohttp under asyncio, node, schemathesis) and async tests share it.
"""

from __future__ import annotations

import os
import queue
import shutil
import tempfile
import threading
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import httpx
import pytest
import trio

from pistond.gateway.app import GatewaySettings, create_app
from pistond.gateway.keyfile import FileKeyStore
from pistond.gateway.metrics import GatewayMetrics
from pistond.gateway.server import ServerSettings, open_listeners, serve_gateway
from pistond.gateway.stream import ConnectionLimits
from pistond.rpc.server import serve_rpc
from pistond.testing.daemon import DaemonProcess

from .fake_daemon import FakeDaemon

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

REAL_DAEMON_VARIABLE = "PISTOND_TEST_DAEMON_SOCKET"
MAX_BODY_SIZE = 64 * 1024
"""The test gateway's body limit (small, to test 413 cheaply)."""


@attrs.define(eq=False)
class GatewayStack:
    """A running gateway (and fake daemon) in a background thread."""

    url: str
    """Base URL of the gateway, e.g. ``http://127.0.0.1:41234``."""
    down_url: str
    """A second gateway whose daemon socket does not exist (503 tests)."""
    fake: FakeDaemon | None
    metrics: GatewayMetrics
    token: trio.lowlevel.TrioToken
    scope: trio.CancelScope
    thread: threading.Thread
    directory: str

    @property
    def ws_url(self) -> str:
        """The WebSocket URL of ``/api/v2/connect``."""
        return self.url.replace("http://", "ws://", 1) + "/api/v2/connect"

    def stop(self) -> None:
        """Cancel the stack's loop, wait for the thread and remove the socket directory."""
        trio.from_thread.run_sync(self.scope.cancel, trio_token=self.token)
        self.thread.join(timeout=10)
        shutil.rmtree(self.directory, ignore_errors=True)


def _daemon_socket(directory: str, real: Path | None) -> tuple[Path, FakeDaemon | None]:
    """The one place choosing the daemon: a real one if given, else the fake."""
    if real is not None:
        return real, None
    return Path(directory) / "fake.sock", FakeDaemon()


@attrs.frozen
class StackSettings:
    """How a test stack's gateways are set up (the defaults: the shipped caps and deadlines)."""

    server: ServerSettings = attrs.field(
        factory=lambda: ServerSettings(
            websocket_max_message_size=MAX_BODY_SIZE, graceful_timeout=1.0
        )
    )
    max_websockets: int = 256
    max_jobs_per_client: int = 16
    gateway: dict[str, Any] = attrs.field(factory=dict)
    """More :class:`GatewaySettings` fields (rate limit, trusted proxies, CORS origins)."""
    keys_file: Path | None = None
    """A key file to require API keys from; None: keys are off."""


TIGHT = StackSettings(
    server=ServerSettings(
        limits=ConnectionLimits(idle_timeout=0.5, head_timeout=0.5, body_timeout=0.5),
        websocket_max_message_size=MAX_BODY_SIZE,
        graceful_timeout=1.0,
    ),
)
"""Short deadlines, to reach each of them cheaply."""
CAPPED = StackSettings(
    server=ServerSettings(
        websocket_max_message_size=MAX_BODY_SIZE,
        graceful_timeout=1.0,
        max_connections=8,
        max_connections_per_client=4,
    ),
    max_websockets=2,
    max_jobs_per_client=2,
)
"""Small caps, to reach each of them cheaply."""


async def _serve_stack(
    directory: str, real: Path | None, ready: queue.Queue[Any], stack: StackSettings
) -> None:
    socket_path, fake = _daemon_socket(directory, real)
    metrics = GatewayMetrics()
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            if fake is not None:
                sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
                await sock.bind(str(socket_path))
                sock.listen(64)
                listeners = [trio.SocketListener(sock)]
                await nursery.start(
                    partial(serve_rpc, listeners, fake, max_message_size=64 * 1024 * 1024)
                )
            urls = []
            for target in (socket_path, Path(directory) / "missing.sock"):
                settings = GatewaySettings(
                    socket=target,
                    max_body_size=MAX_BODY_SIZE,
                    max_websockets=stack.max_websockets,
                    max_jobs_per_client=stack.max_jobs_per_client,
                    **stack.gateway,
                )
                keys = None if stack.keys_file is None else FileKeyStore.open(stack.keys_file)
                app = create_app(settings, metrics if target == socket_path else None, keys=keys)
                listeners = open_listeners(["127.0.0.1:0"])
                binds = await nursery.start(partial(serve_gateway, app, listeners, stack.server))
                urls.append(binds[0])
            ready.put((urls, fake, metrics, trio.lowlevel.current_trio_token(), scope))


def start_stack(real: Path | None, settings: StackSettings | None = None) -> GatewayStack:
    directory = tempfile.mkdtemp(prefix="pistond-gw-", dir="/tmp")
    ready: queue.Queue[Any] = queue.Queue()

    def run() -> None:
        try:
            trio.run(_serve_stack, directory, real, ready, settings or StackSettings())
        except BaseException as exc:
            ready.put(exc)
            raise

    thread = threading.Thread(target=run, name="gateway-stack", daemon=True)
    thread.start()
    started = ready.get(timeout=20)
    if isinstance(started, BaseException):
        raise started
    urls, fake, metrics, token, scope = started
    return GatewayStack(urls[0], urls[1], fake, metrics, token, scope, thread, directory)


@pytest.fixture(scope="session", params=["fake-daemon", "real-daemon"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayStack]:
    """The running gateway stack, shared by the session: once over the fake, once over pistond.

    The real daemon is ``PISTOND_TEST_DAEMON_SOCKET`` when set, else a pistond started here with
    its host runtimes (root only).
    """
    real: Path | None = None
    daemon: DaemonProcess | None = None
    if request.param == "real-daemon":
        if os.environ.get(REAL_DAEMON_VARIABLE):
            real = Path(os.environ[REAL_DAEMON_VARIABLE])
        elif os.geteuid() != 0:
            pytest.skip("a real pistond needs root")
        else:
            daemon = DaemonProcess.start(tmp_path_factory.mktemp("gateway-daemon"))
            real = daemon.socket
    running = start_stack(real)
    try:
        yield running
    finally:
        running.stop()
        if daemon is not None:
            daemon.stop()


@pytest.fixture(scope="module")
def tight() -> Iterator[GatewayStack]:
    """A gateway with short deadlines (:data:`TIGHT`) over the fake daemon."""
    running = start_stack(None, TIGHT)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def capped() -> Iterator[GatewayStack]:
    """A gateway with small caps (:data:`CAPPED`) over the fake daemon."""
    running = start_stack(None, CAPPED)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def gateway(stack: GatewayStack) -> GatewayStack:
    """The stack, with the fake daemon's records and injected errors reset."""
    if stack.fake is not None:
        stack.fake.reset()
    return stack


@pytest.fixture
def fake(gateway: GatewayStack) -> FakeDaemon:
    """The fake daemon; skips the test when a real daemon is configured."""
    if gateway.fake is None:
        pytest.skip("relies on the fake daemon's scripted behaviour (this pass runs real pistond)")
    return gateway.fake


@asynccontextmanager
async def open_http(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the gateway (no retries, short timeouts)."""
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        yield client


@pytest.fixture
async def http(gateway: GatewayStack) -> AsyncIterator[httpx.AsyncClient]:
    """An async HTTP client bound to the gateway."""
    async with open_http(gateway.url) as client:
        yield client
