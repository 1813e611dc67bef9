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
from .raw import Exchange, exchange, frame, upgrade_head

ISSUE_9_REQUEST = (
    b"GET /api/v2/connect HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n\x00"
)
"""The request of issue 9: a WebSocket upgrade with one byte after it in the same packet."""
GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
INIT = b'{"type":"init","language":"python","version":"*","files":[{"content":"print(1)"}]}'

HTTP_BATTERY: list[tuple[str, bytes, int | None]] = [
    ("eager byte after upgrade", ISSUE_9_REQUEST, 101),
    ("eager text frame", upgrade_head() + frame(0x1, INIT), 101),
    ("eager unmasked frame", upgrade_head() + frame(0x1, b"{}", masked=False), 101),
    ("eager close frame", upgrade_head() + frame(0x8, b"\x03\xe8"), 101),
    ("eager garbage", upgrade_head() + b"\xff" * 4096, 101),
    ("bad websocket key", upgrade_head(key="short"), 400),
    ("websocket version 8", upgrade_head(version="8"), 426),
    ("no websocket key", b"GET /api/v2/connect HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
     b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n", 400),
    ("upgrade with a body", upgrade_head(extra="Content-Length: 3\r\n") + b"abc", 400),
    ("upgrade by POST", upgrade_head(method="POST"), 404),
    ("upgrade to an unknown route", upgrade_head(path="/nowhere"), 403),
    ("half handshake", upgrade_head()[:40], None),
    ("oversized header", b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n",
     431),
    ("oversized target", b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 431),
    ("TLS client hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(64)), 400),
    ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
    ("binary garbage", bytes(range(256)), 400),
    ("empty lines only", b"\r\n" * 20, 400),
    ("bare LF", b"GET / HTTP/1.1\nHost: x\n\n", 400),
    ("obsolete line folding", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400),
    ("unknown HTTP version", b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", 505),
    ("NUL in a header", b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400),
    ("space before colon", b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
    ("no Host", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("two Hosts", b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),
    ("Content-Length and Transfer-Encoding",
     b"POST /api/v2/execute HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("duplicate Content-Length",
     b"POST /api/v2/execute HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n"
     b"\r\n{}", 400),
    ("Content-Length list", b"POST /api/v2/execute HTTP/1.1\r\nHost: x\r\nContent-Length: 2, 2"
     b"\r\n\r\n{}", 400),
    ("negative Content-Length", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
    ("Transfer-Encoding gzip", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
     501),
    ("Transfer-Encoding twice", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501),
    ("bad chunk size", b"POST /api/v2/execute HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
     b"\r\n\r\n5x\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk size overflow", b"POST /api/v2/execute HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
     b"chunked\r\n\r\nffffffffffffffffffff\r\n", 400),
    ("chunk without its CRLF", b"POST /api/v2/execute HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
     b"chunked\r\n\r\n2\r\n{}XX0\r\n\r\n", 400),
    ("TE in HTTP/1.0", b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("h2c upgrade is served as HTTP/1.1", b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, "
     b"HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n", 200),
    ("expect continue, then nothing", b"POST /api/v2/execute HTTP/1.1\r\nHost: x\r\n"
     b"Content-Length: 10\r\nExpect: 100-continue\r\n\r\n", 100),
    ("truncated body", b"POST /api/v2/execute HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
     b"\r\n{}", None),
]  # fmt: skip

WS_BATTERY: list[tuple[str, bytes]] = [
    ("reserved opcode", frame(0x3, b"x")),
    ("RSV1 without extension", frame(0x1, b"{}", rsv=4)),
    ("ping over 125 bytes", frame(0x9, b"p" * 126)),
    ("fragmented ping", frame(0x9, b"p", fin=False)),
    ("unmasked client frame", frame(0x1, INIT, masked=False)),
    ("close code 999", frame(0x8, (999).to_bytes(2, "big"))),
    ("close with one byte", frame(0x8, b"\x03")),
    ("invalid UTF-8 text", frame(0x1, b"\xff\xfe")),
    ("continuation first", frame(0x0, b"{}")),
    ("length 2**63 - 1", frame(0x2, b"", length=2**63 - 1)),
    ("message over the limit", frame(0x2, b"x" * 70_000)),
    ("text frames never finished", frame(0x1, b"{", fin=False) + frame(0x0, b" ", fin=False) * 50),
]


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
