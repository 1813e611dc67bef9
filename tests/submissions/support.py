"""Helpers of the submission tests: a gateway with submissions in process, and polling.

The in-process stack serves the real app on 127.0.0.1, port 0, in front of the gateway tests'
fake daemon over a real RPC socket; times are shortened by settings, never by patching.
"""

from __future__ import annotations

import inspect
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

import attrs
import httpx
import trio
from gateway.fake_daemon import FakeDaemon

from pistond.gateway.app import GatewaySettings, create_app
from pistond.gateway.daemon_socket import DaemonSocket
from pistond.gateway.server import ServerSettings, open_listeners, serve_gateway
from pistond.rpc.server import serve_rpc
from pistond.submissions.addresses import CallbackPolicy
from pistond.submissions.database import database_url
from pistond.submissions.runner import RunnerSettings
from pistond.submissions.service import SubmissionService, SubmissionSettings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
    from pathlib import Path

    from pistond.gateway.apikeys import KeyStore


async def hosts_only(host: str, port: int) -> Sequence[str]:
    """A resolver that knows ``localhost`` and nothing else: tests never query DNS."""
    if host == "localhost":
        return ["127.0.0.1"]
    raise OSError(f"{host} is not resolved in tests")


@attrs.frozen
class Stack:
    """A gateway with submissions, its fake daemon and its service, in this test's loop."""

    http: httpx.AsyncClient
    service: SubmissionService
    fake: FakeDaemon
    url: str


@asynccontextmanager
async def open_stack(
    directory: Path,
    *,
    url: str = "",
    fake: FakeDaemon | None = None,
    policy: CallbackPolicy | None = None,
    keys: KeyStore | None = None,
    **settings: Any,
) -> AsyncIterator[Stack]:
    """Serve the app with submissions (SQLite in ``directory`` unless ``url``) over a fake.

    Args:
        directory: holds the fake's socket and the default SQLite database.
        url: ``PISTON_DATABASE_URL``; empty: SQLite in ``directory``.
        fake: the fake daemon; a fresh one by default.
        policy: where callbacks may go; loopback only by default, resolving no name but
            ``localhost``.
        keys: the API keys the gateway requires; None: keys are off.
        **settings: :class:`SubmissionSettings` fields, and ``workers``, ``lease``,
            ``poll_interval``, ``max_attempts``, ``max_result_size`` of the runner.
    """
    fake = fake or FakeDaemon()
    runner_fields = set(attrs.fields_dict(RunnerSettings))
    runner = RunnerSettings(
        **{"poll_interval": 0.05, "lease": 5.0}
        | {key: value for key, value in settings.items() if key in runner_fields}
    )
    service_settings = SubmissionSettings(
        url=database_url(url, directory),
        configured=bool(url),
        runner=runner,
        **{key: value for key, value in settings.items() if key not in runner_fields},
    )
    socket_path = directory / "fake.sock"
    async with trio.open_nursery() as nursery:
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        await sock.bind(str(socket_path))
        sock.listen(64)
        await nursery.start(
            partial(serve_rpc, [trio.SocketListener(sock)], fake, max_message_size=1 << 26)
        )
        service = SubmissionService(
            service_settings,
            DaemonSocket(socket_path),
            policy or CallbackPolicy.from_entries(["127.0.0.0/8"], resolver=hosts_only),
        )
        await nursery.start(service.serve)
        app = create_app(GatewaySettings(socket=socket_path), submissions=service, keys=keys)
        binds = await nursery.start(
            partial(
                serve_gateway,
                app,
                open_listeners(["127.0.0.1:0"]),
                ServerSettings(graceful_timeout=1.0),
            )
        )
        async with httpx.AsyncClient(base_url=binds[0], timeout=20) as http:
            yield Stack(http, service, fake, binds[0])
        nursery.cancel_scope.cancel()


HELLO: dict[str, Any] = {
    "language": "python",
    "version": "3.x",
    "files": [{"content": "print('hello')"}],
}
"""A submission body the fake daemon runs (and a real python runtime too)."""


async def wait_done(http: httpx.AsyncClient, token: str, seconds: float = 15) -> dict[str, Any]:
    """Poll ``GET /api/v2/submissions/{token}`` until done; the submission."""
    with trio.fail_after(seconds):
        while True:
            answer = await http.get(f"/api/v2/submissions/{token}")
            assert answer.status_code == 200, answer.text
            body: dict[str, Any] = answer.json()
            if body["state"] == "done":
                return body
            await trio.sleep(0.02)


async def eventually(
    predicate: Callable[[], bool | Awaitable[bool]], seconds: float = 10, interval: float = 0.02
) -> None:
    """Wait until ``predicate()`` holds, polling: what it reads lives in a database, another
    process or a log, which have no event to wait on."""
    with trio.fail_after(seconds):
        while True:
            value = predicate()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return
            await trio.sleep(interval)
