"""pistond.gateway.server: connection caps, one failing connection or accept loop stops nothing.

Rules: the ``capped`` gateway (8 connections, 4 per client address) for the caps; a gateway
served in the test's own trio loop for failures injected into the server; 127.0.0.x source
addresses stand for different clients; every exchange under ``fail_after``.
"""

from __future__ import annotations

import json
import logging
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from pistond.gateway import server
from pistond.gateway.server import ServerSettings, open_listeners, serve_gateway

from .raw import open_raw, read_until_close

if TYPE_CHECKING:
    from starlette.requests import Request

    from .conftest import GatewayStack

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


async def _refusal(url: str, source: str) -> tuple[int | None, dict[str, Any], bytes]:
    stream = await open_raw(url, source)
    async with stream:
        await stream.send_all(GET)
        answer = await read_until_close(stream, 3)
    head, _, body = answer.data.partition(b"\r\n\r\n")
    assert answer.closed
    return answer.status, json.loads(body), head.lower()


async def test_server_caps_connections_per_client_then_in_all(capped: GatewayStack) -> None:
    """The 5th connection of one address gets 429; the 9th in all gets 503; both close."""
    with trio.fail_after(10):
        async with AsyncExitStack() as held:
            for source in ("127.0.0.1",) * 4:
                await held.enter_async_context(await open_raw(capped.url, source))
            await trio.sleep(0.2)
            status, body, head = await _refusal(capped.url, "127.0.0.1")
            assert status == 429
            assert body == {"message": "too many connections from this client (at most 4)"}
            assert b"retry-after: 1" in head
            for source in ("127.0.0.2",) * 4:
                await held.enter_async_context(await open_raw(capped.url, source))
            await trio.sleep(0.2)
            status, body, _ = await _refusal(capped.url, "127.0.0.3")
            assert status == 503
            assert body == {"message": "the gateway is at its limit of 8 connections"}
        await trio.sleep(0.2)
        async with httpx.AsyncClient(base_url=capped.url) as http:
            assert (await http.get("/")).status_code == 200


async def _hello(request: Request) -> JSONResponse:
    return JSONResponse({"message": "hello"})


@pytest.fixture
async def own_gateway(nursery: trio.Nursery) -> str:
    """A gateway server with a one-route app, in this test's trio loop; yields its URL."""
    app = Starlette(routes=[Route("/", _hello)])
    listeners = open_listeners(["127.0.0.1:0"])
    urls: list[str] = await nursery.start(serve_gateway, app, listeners, ServerSettings())
    return urls[0]


async def test_server_contains_a_failing_connection(
    own_gateway: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception escaping one connection closes it, is logged with an incident id, and the
    next connection is served."""
    original = server._ConnectionServer._read_data
    failures = 0

    async def failing_once(self: server._ConnectionServer) -> None:
        nonlocal failures
        if failures == 0:
            failures += 1
            raise RuntimeError("a bug in the HTTP stack")
        await original(self)

    monkeypatch.setattr(server._ConnectionServer, "_read_data", failing_once)
    with trio.fail_after(10), caplog.at_level(logging.ERROR, logger="pistond.gateway.server"):
        stream = await open_raw(own_gateway)
        async with stream:
            broken = await read_until_close(stream, 3)
        async with httpx.AsyncClient(base_url=own_gateway) as http:
            answer = await http.get("/")
    assert broken.closed
    assert answer.json() == {"message": "hello"}
    assert "incident" in caplog.text
    assert "a bug in the HTTP stack" in caplog.text


async def test_server_restarts_a_failed_accept_loop(
    own_gateway: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An accept loop that fails is restarted by its supervisor; the gateway keeps serving."""
    original = trio.SocketListener.accept
    failures = 0

    async def failing_once(self: trio.SocketListener) -> trio.SocketStream:
        nonlocal failures
        if failures == 0:
            failures += 1
            raise ValueError("accept broke")
        return await original(self)

    monkeypatch.setattr(trio.SocketListener, "accept", failing_once)
    with trio.fail_after(10), caplog.at_level(logging.ERROR, logger="pistond.gateway.server"):
        # The loop waits in the original accept: this connection is served, the next accept
        # call fails.
        stream = await open_raw(own_gateway)
        async with stream:
            await stream.send_all(GET)
            assert (await read_until_close(stream, 0.5)).status == 200
        async with httpx.AsyncClient(base_url=own_gateway) as http:
            answer = await http.get("/")
    assert answer.json() == {"message": "hello"}
    assert "the accept loop failed; restarting it" in caplog.text
    assert failures == 1
