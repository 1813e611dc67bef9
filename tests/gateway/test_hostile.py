"""Hostile traffic: no request, however malformed, stops the gateway or disturbs other clients.

Rules: raw bytes on 127.0.0.1 (the gateway under test listens on port 0), every exchange
bounded in time; a legitimate client keeps calling the gateway during the battery and must
see every one of its requests answered.
"""

from __future__ import annotations

import httpx
import pytest
import trio

from .conftest import GatewayStack, open_http
from .raw import GET, HTTP_BATTERY, ISSUE_9_REQUEST, WS_BATTERY, Exchange, exchange, upgrade_head


async def _upgraded(url: str, payload: bytes) -> Exchange:
    return await exchange(url, upgrade_head(), payload, pause=0.2)


async def test_hostile_issue_9_request_leaves_the_gateway_serving(gateway: GatewayStack) -> None:
    """Bytes sent with the upgrade request wait for the 101; the gateway keeps serving."""
    with trio.fail_after(10):
        answer = await exchange(gateway.url, ISSUE_9_REQUEST, wait=2.5)
        assert answer.status == 101
        assert answer.closed  # 4001: an incomplete frame is no init
        async with open_http(gateway.url) as http:
            assert (await http.get("/")).status_code == 200


@pytest.mark.parametrize(
    ("name", "payload", "status"), HTTP_BATTERY, ids=[c[0] for c in HTTP_BATTERY]
)
async def test_hostile_http_openings_get_their_answer(
    gateway: GatewayStack, name: str, payload: bytes, status: int | None
) -> None:
    """Each malformed opening gets its 4xx/5xx (or 101) and closes; none reaches a 500."""
    closes = status is not None and status not in (100, 200)
    with trio.fail_after(15):
        answer = await exchange(gateway.url, payload, wait=2.5 if closes else 0.5)
    assert answer.status == status, answer.data[:200]
    if status is not None and status >= 400:
        assert answer.closed
        assert b'"message"' in answer.data or status in (400, 403, 404)


@pytest.mark.parametrize(("name", "payload"), WS_BATTERY, ids=[c[0] for c in WS_BATTERY])
async def test_hostile_websocket_frames_close_only_their_session(
    gateway: GatewayStack, name: str, payload: bytes
) -> None:
    """An invalid frame after the handshake closes that session (and only it) promptly."""
    with trio.fail_after(15):
        answer = await _upgraded(gateway.url, payload)
    assert answer.status == 101
    assert answer.closed


async def test_hostile_pipelined_garbage_after_a_request(gateway: GatewayStack) -> None:
    """A valid request is answered, the garbage pipelined after it gets a 400, then a close."""
    with trio.fail_after(10):
        answer = await exchange(gateway.url, GET + b"\x00\x01garbage\r\n\r\n")
    assert answer.status == 200
    assert b"HTTP/1.1 400 " in answer.data
    assert answer.closed


async def test_hostile_battery_while_a_client_is_served(gateway: GatewayStack) -> None:
    """The whole battery, many times at once, while another client's requests all succeed."""
    served = failed = 0
    done = trio.Event()

    async def legitimate() -> None:
        nonlocal served, failed
        async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as http:
            while not done.is_set():
                try:
                    answer = await http.get("/")
                except httpx.HTTPError:
                    failed += 1
                    continue
                if answer.status_code == 200:
                    served += 1
                else:
                    failed += 1

    async def battery() -> None:
        limit = trio.CapacityLimiter(64)

        async def one(payload: bytes, upgraded: bool) -> None:
            async with limit:
                if upgraded:
                    await _upgraded(gateway.url, payload)
                else:
                    await exchange(gateway.url, payload, wait=1.5)

        async with trio.open_nursery() as nursery:
            for _ in range(3):
                for _, payload, _ in HTTP_BATTERY:
                    nursery.start_soon(one, payload, False)
                for _, payload in WS_BATTERY:
                    nursery.start_soon(one, payload, True)
        done.set()

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(legitimate)
            nursery.start_soon(battery)
    assert failed == 0
    assert served > 0
