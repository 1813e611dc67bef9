"""pistond.gateway.cors through a real gateway: preflights allowed and refused, headers on
answers, cross-origin changes and WebSocket origins checked against the same list.

Rules: one gateway allowing ``https://editor.example.com`` and one with the default (no
origins), both over the fake daemon; ``Origin`` headers are set by hand as a browser would.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest
import trio
import trio_websocket

from pistond.gateway.cors import normalise_origin

from .conftest import StackSettings, start_stack

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .conftest import GatewayStack

EDITOR = "https://editor.example.com"
EVIL = "https://evil.example.net"
HELLO = {"language": "python", "version": "3.12.0", "files": [{"content": 'print("hi")'}]}
PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "content-type, authorization",
}


@pytest.fixture(scope="module")
def cors() -> Iterator[GatewayStack]:
    """A gateway allowing the editor's origin."""
    stack = start_stack(None, StackSettings(gateway={"cors_origins": (EDITOR + ":443/",)}))
    try:
        yield stack
    finally:
        stack.stop()


def test_cors_origins_are_normalised() -> None:
    """Case, default ports and trailing slashes do not matter; other ports do."""
    assert normalise_origin("HTTPS://Editor.Example.com:443/") == EDITOR
    assert normalise_origin("http://localhost:3000") == "http://localhost:3000"
    assert normalise_origin("http://[::1]:80") == "http://[::1]"
    assert normalise_origin("*") == "*"


async def test_cors_preflight_allowed(cors: GatewayStack) -> None:
    """An allowed origin's preflight: 204 with the origin, methods, headers and max age."""
    async with httpx.AsyncClient(base_url=cors.url, timeout=10) as client:
        with trio.fail_after(10):
            response = await client.options(
                "/api/v2/execute", headers={"Origin": EDITOR, **PREFLIGHT}
            )
    assert response.status_code == 204
    assert response.content == b""
    assert response.headers["access-control-allow-origin"] == EDITOR
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed = response.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed
    assert "content-type" in allowed
    assert response.headers["access-control-max-age"] == "600"
    assert "access-control-allow-credentials" not in response.headers


@pytest.mark.parametrize(
    ("origin", "request_headers", "refused"),
    [
        (EVIL, PREFLIGHT, "origin"),
        (EDITOR, {"Access-Control-Request-Method": "PUT"}, "method"),
        (
            EDITOR,
            {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-a"},
            "headers",
        ),
    ],
)
async def test_cors_preflight_refused(
    cors: GatewayStack, origin: str, request_headers: dict[str, str], refused: str
) -> None:
    """A preflight for another origin, method or header: 403 JSON without allowing headers."""
    async with httpx.AsyncClient(base_url=cors.url, timeout=10) as client:
        with trio.fail_after(10):
            response = await client.options(
                "/api/v2/execute", headers={"Origin": origin, **request_headers}
            )
    assert response.status_code == 403
    assert response.json() == {"message": f"CORS preflight refused: {refused} not allowed"}
    assert "access-control-allow-origin" not in response.headers


async def test_cors_preflight_refused_by_default(gateway: GatewayStack) -> None:
    """With no origins configured (the default), every preflight is refused."""
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
        with trio.fail_after(10):
            response = await client.options(
                "/api/v2/execute", headers={"Origin": EDITOR, **PREFLIGHT}
            )
    assert response.status_code == 403
    assert "access-control-allow-origin" not in response.headers


async def test_cors_answers_carry_origin_and_exposed_headers(cors: GatewayStack) -> None:
    """An allowed origin's request runs and its answer lets the page read it and its headers."""
    async with httpx.AsyncClient(base_url=cors.url, timeout=10) as client:
        with trio.fail_after(10):
            response = await client.post("/api/v2/execute", json=HELLO, headers={"Origin": EDITOR})
            listing = await client.get("/api/v2/runtimes", headers={"Origin": EVIL})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == EDITOR
    exposed = response.headers["access-control-expose-headers"]
    for name in ("RateLimit-Remaining", "Retry-After", "WWW-Authenticate"):
        assert name in exposed
    assert "Origin" in response.headers["vary"]
    assert listing.status_code == 200  # reading is the browser's to refuse
    assert "access-control-allow-origin" not in listing.headers


async def test_cors_changes_from_a_foreign_origin_are_refused(cors: GatewayStack) -> None:
    """A POST from a page on an origin not allowed (no preflight needed for text/plain) is 403
    before anything runs; the gateway's own origin and clients without Origin pass."""
    fake = cors.fake
    assert fake is not None
    fake.reset()
    own = cors.url
    async with httpx.AsyncClient(base_url=cors.url, timeout=10) as client:
        with trio.fail_after(10):
            foreign = await client.post(
                "/api/v2/execute",
                content=b'{"language":"python","version":"3.12.0","files":[{"content":"x"}]}',
                headers={"Origin": EVIL, "Content-Type": "text/plain"},
            )
            same = await client.post("/api/v2/execute", json=HELLO, headers={"Origin": own})
            plain = await client.post("/api/v2/execute", json=HELLO)
    assert foreign.status_code == 403
    assert foreign.json() == {"message": f"origin {EVIL} is not allowed"}
    assert [name for name, _ in fake.calls].count("execute") == 2
    assert same.status_code == 200
    assert plain.status_code == 200


async def test_cors_websocket_origin_is_checked(cors: GatewayStack) -> None:
    """A handshake from a foreign origin is refused with 403; allowed, own or no Origin pass."""
    with trio.fail_after(10):
        with pytest.raises(trio_websocket.ConnectionRejected) as rejected:
            async with trio_websocket.open_websocket_url(
                cors.ws_url, extra_headers=[("Origin", EVIL)]
            ):
                pass
        for headers in ([("Origin", EDITOR)], [("Origin", cors.url)], []):
            async with trio_websocket.open_websocket_url(cors.ws_url, extra_headers=headers):
                pass
    assert rejected.value.status_code == 403
    assert rejected.value.body is not None
    assert f"origin {EVIL} is not allowed".encode() in rejected.value.body
