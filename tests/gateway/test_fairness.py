"""pistond.gateway.fairness: per-client shares of jobs and WebSocket sessions, 429 and 503.

Rules: the ``capped`` gateway (2 jobs per client, 2 WebSocket sessions, fake daemon) on
127.0.0.1; other clients are other loopback source addresses (127.0.0.2, ...).
"""

from __future__ import annotations

import json
from functools import partial
from typing import TYPE_CHECKING

import httpx
import pytest
import trio

from pistond.gateway.fairness import Full, Places

from .raw import open_raw, read_until_close, upgrade_head

if TYPE_CHECKING:
    from .conftest import GatewayStack


def test_fairness_places_cap_in_all_then_per_client() -> None:
    """Beyond its share a client gets 429; beyond the total everyone gets 503."""
    places = Places("jobs", total=3, per_client=2)
    places.take("a")
    places.take("a")
    with pytest.raises(Full) as per_client:
        places.take("a")
    assert (per_client.value.status, per_client.value.message) == (
        429,
        "too many jobs from this client (at most 2)",
    )
    places.take("b")
    with pytest.raises(Full) as total:
        places.take("c")
    assert (total.value.status, total.value.message) == (
        503,
        "the gateway is at its limit of 3 jobs",
    )
    places.give_back("a")
    places.take("c")
    assert (places.held, places.held_by("a"), places.held_by("c")) == (3, 1, 1)


def test_fairness_places_hold_returns_the_place() -> None:
    """A place held by a block is returned when it exits, even by an exception."""
    places = Places("jobs", per_client=1)
    with pytest.raises(RuntimeError), places.hold("a"):
        raise RuntimeError
    with places.hold("a"):
        assert places.held_by("a") == 1
    assert places.held == 0


def _client(url: str, source: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(local_address=source)
    return httpx.AsyncClient(base_url=url, timeout=10, transport=transport)


def _body(source: str) -> dict[str, object]:
    return {"language": "python", "version": "*", "files": [{"content": source}]}


async def test_fairness_one_client_cannot_take_every_job(capped: GatewayStack) -> None:
    """A client running its share of jobs gets 429 with Retry-After; another client is served."""
    sleeping = _body("import time; time.sleep(1.5)")
    answers: list[httpx.Response] = []
    with trio.fail_after(10):
        async with _client(capped.url) as greedy, _client(capped.url, "127.0.0.2") as other:

            async def run() -> None:
                answers.append(await greedy.post("/api/v2/execute", json=sleeping))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(run)
                nursery.start_soon(run)
                await trio.sleep(0.5)
                refused = await greedy.post("/api/v2/execute", json=_body('print("x")'))
                served = await other.post("/api/v2/execute", json=_body('print("y")'))
            again = await greedy.post("/api/v2/execute", json=_body('print("z")'))
    assert refused.status_code == 429
    assert refused.json() == {"message": "too many jobs from this client (at most 2)"}
    assert refused.headers["retry-after"] == "1"
    assert served.status_code == 200
    assert [answer.status_code for answer in answers] == [200, 200]
    assert again.status_code == 200


async def _handshake(url: str, source: str) -> tuple[trio.SocketStream, bytes]:
    stream = await open_raw(url, source)
    await stream.send_all(upgrade_head())
    with trio.move_on_after(3):
        data = await stream.receive_some(4096)
    return stream, data


async def test_fairness_websocket_sessions_are_capped_with_503(capped: GatewayStack) -> None:
    """With every WebSocket place taken, a handshake is refused with HTTP 503 and a message."""
    with trio.fail_after(10):
        first, accepted = await _handshake(capped.url, "127.0.0.1")
        second, accepted_too = await _handshake(capped.url, "127.0.0.2")
        third = await open_raw(capped.url, "127.0.0.3")
        async with first, second, third:
            await third.send_all(upgrade_head())
            answer = await read_until_close(third, 3)
    assert accepted.startswith(b"HTTP/1.1 101 ")
    assert accepted_too.startswith(b"HTTP/1.1 101 ")
    assert answer.status == 503
    assert b"retry-after: 1" in answer.data.lower()
    body = answer.data.partition(b"\r\n\r\n")[2]
    assert json.loads(body) == {"message": "the gateway is at its limit of 2 WebSocket sessions"}


async def test_fairness_websocket_session_counts_as_a_job(capped: GatewayStack) -> None:
    """A client whose jobs are all running cannot open a WebSocket session either (429)."""
    sleeping = _body("import time; time.sleep(1.5)")
    with trio.fail_after(10):
        async with _client(capped.url, "127.0.0.4") as greedy, trio.open_nursery() as nursery:
            for _ in range(2):
                nursery.start_soon(partial(greedy.post, "/api/v2/execute", json=sleeping))
            await trio.sleep(0.5)
            stream = await open_raw(capped.url, "127.0.0.4")
            async with stream:
                await stream.send_all(upgrade_head())
                answer = await read_until_close(stream, 3)
    assert answer.status == 429
    assert b"too many jobs from this client (at most 2)" in answer.data
