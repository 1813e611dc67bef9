"""pistond.gateway.health: liveness, readiness as the daemon comes and goes, information.

Rules: a gateway and a fake daemon served in the test's own trio loop, so the daemon can be
stopped (its socket closed and removed) and started again on the same path; every exchange
under ``fail_after``. The information route must name no path, URL or secret.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import httpx
import pytest
import trio

from pistond.gateway.app import GatewaySettings, create_app
from pistond.gateway.health import FACTS_TTL, NO_RUNTIMES
from pistond.gateway.server import ServerSettings, open_listeners, serve_gateway
from pistond.rpc.server import serve_rpc

from .fake_daemon import FakeDaemon

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


@attrs.define(eq=False)
class Stoppable:
    """A fake daemon that can be stopped and started again, and a gateway in front of it."""

    nursery: trio.Nursery
    socket: Path
    fake: FakeDaemon = attrs.field(factory=FakeDaemon)
    scope: trio.CancelScope | None = None
    url: str = ""

    async def start(self) -> None:
        """Serve the fake daemon on the socket path."""
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        await sock.bind(str(self.socket))
        sock.listen(16)
        self.scope = trio.CancelScope()

        async def serve(task_status: trio.TaskStatus[None]) -> None:
            assert self.scope is not None
            with self.scope:
                await serve_rpc(
                    [trio.SocketListener(sock)],
                    self.fake,
                    max_message_size=1 << 20,
                    task_status=task_status,
                )

        await self.nursery.start(serve)

    def stop(self) -> None:
        """Stop serving and remove the socket, as a stopped pistond leaves it."""
        assert self.scope is not None
        self.scope.cancel()
        self.socket.unlink()


@pytest.fixture
async def stoppable(nursery: trio.Nursery) -> AsyncIterator[Stoppable]:
    """A running fake daemon and a gateway, in this test's loop."""
    directory = Path(tempfile.mkdtemp(prefix="pistond-health-", dir="/tmp"))
    daemon = Stoppable(nursery, directory / "fake.sock")
    await daemon.start()
    app = create_app(GatewaySettings(socket=daemon.socket, max_jobs_per_client=4))
    urls = await nursery.start(
        serve_gateway, app, open_listeners(["127.0.0.1:0"]), ServerSettings(graceful_timeout=1)
    )
    daemon.url = urls[0]
    yield daemon
    shutil.rmtree(directory, ignore_errors=True)


async def _ready(client: httpx.AsyncClient) -> httpx.Response:
    await trio.sleep(FACTS_TTL)  # past the cached answer
    return await client.get("/api/v2/health/ready")


async def test_health_ready_then_unready_then_ready_again(stoppable: Stoppable) -> None:
    """Ready while the daemon answers with runtimes; 503 naming the daemon when it stops
    (liveness stays 200); ready again once it is back."""
    async with httpx.AsyncClient(base_url=stoppable.url, timeout=10) as client:
        with trio.fail_after(20):
            ready = await client.get("/api/v2/health")
            stoppable.stop()
            down = await _ready(client)
            live = await client.get("/api/v2/health/live")
            await stoppable.start()
            back = await _ready(client)
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "live": True,
        "ready": True,
        "checks": {"daemon": {"ready": True, "runtimes": len(stoppable.fake.runtimes)}},
    }
    assert down.status_code == 503
    assert down.json() == {
        "status": "unready",
        "live": True,
        "ready": False,
        "message": "the execution daemon is unavailable, try again later",
        "checks": {
            "daemon": {
                "ready": False,
                "message": "the execution daemon is unavailable, try again later",
            }
        },
    }
    assert (live.status_code, live.json()) == (200, {"status": "live"})
    assert back.status_code == 200
    assert back.json()["ready"] is True


async def test_health_without_runtimes_is_unready(stoppable: Stoppable) -> None:
    """A daemon with no runtime installed cannot serve anyone: unready."""
    stoppable.fake.runtimes = ()
    async with httpx.AsyncClient(base_url=stoppable.url, timeout=10) as client:
        with trio.fail_after(10):
            response = await client.get("/api/v2/health/ready/")
    assert response.status_code == 503
    assert response.json()["checks"]["daemon"] == {
        "ready": False,
        "runtimes": 0,
        "message": NO_RUNTIMES,
    }


async def test_health_asks_the_daemon_once_per_period(stoppable: Stoppable) -> None:
    """A burst of probes costs one question to the daemon."""
    async with httpx.AsyncClient(base_url=stoppable.url, timeout=10) as client:
        with trio.fail_after(10):
            async with trio.open_nursery() as probes:
                for _ in range(20):
                    probes.start_soon(client.get, "/api/v2/health")
    assert [name for name, _ in stoppable.fake.calls].count("runtimes") == 1


async def test_health_info_has_versions_features_limits_and_no_paths(
    stoppable: Stoppable,
) -> None:
    """/api/v2/info: versions, sandbox features, the configured limits and the gateway's public
    policy; nothing naming the socket, a directory or a URL."""
    async with httpx.AsyncClient(base_url=stoppable.url, timeout=10) as client:
        with trio.fail_after(10):
            response = await client.get("/api/v2/info")
            stoppable.stop()
            await trio.sleep(FACTS_TTL)
            down = await client.get("/api/v2/info")
    assert response.status_code == 200
    info = response.json()
    assert info["version"] == "0.0.0-fake"
    assert info["piston_version"] == "3.1.1"
    assert info["sandbox"] == {"cgroup": "none", "seccomp": False, "network": False}
    assert info["limits"]["run_timeout"] == 3000
    assert info["gateway"] == {
        "api_keys": False,
        "rate_limit": None,
        "max_jobs_per_client": 4,
        "max_websockets": 256,
        "max_body_size": 1024 * 1024,
        "cors": False,
        "submissions": False,
    }
    assert "/" not in response.text.replace("http", "")
    assert str(stoppable.socket.parent) not in response.text
    assert down.status_code == 503
    assert down.headers["retry-after"] == "5"
