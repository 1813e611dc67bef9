"""pistond.gateway.guard: request framing checked byte by byte, no I/O."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pistond.gateway.guard import Phase, Refusal, RequestGuard

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
POST = b"POST /api/v2/execute HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
CHUNKED = (
    b"POST /api/v2/execute HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"1\r\n{\r\n1;ext=1\r\n}\r\n0\r\nX-Trailer: t\r\n\r\n"
)
UPGRADE = (
    b"GET /api/v2/connect HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def feed(*chunks: bytes, guard: RequestGuard | None = None) -> tuple[RequestGuard, bytes]:
    guard = guard or RequestGuard()
    out = b""
    for chunk in chunks:
        guard.receive(chunk)
        out += guard.take()
    return guard, out


def test_guard_passes_a_head_only_once_complete() -> None:
    """No byte of a head reaches the server before its blank line has arrived."""
    guard, out = feed(GET[:-2])
    assert (out, guard.phase) == (b"", Phase.HEAD)
    guard, out = feed(GET[-2:], guard=guard)
    assert (out, guard.phase, guard.requests) == (GET, Phase.IDLE, 1)


def test_guard_passes_exactly_a_body_then_holds_the_next_head() -> None:
    """A Content-Length body passes as it comes; the next head waits for its own end."""
    guard, out = feed(POST[:-1])
    assert (out, guard.phase) == (POST[:-1], Phase.BODY)
    guard, out = feed(POST[-1:] + GET[:10], guard=guard)
    assert (out, guard.phase, guard.requests) == (POST[-1:], Phase.HEAD, 1)


def test_guard_follows_chunked_bodies_with_extensions_and_trailers() -> None:
    """A chunked body passes unchanged and ends after its trailers."""
    guard, out = feed(CHUNKED + GET)
    assert (out, guard.phase, guard.requests) == (CHUNKED + GET, Phase.IDLE, 2)


def test_guard_holds_bytes_after_an_upgrade_until_answered() -> None:
    """Bytes after an upgrade head wait for the server's answer: a 101 releases them."""
    guard, out = feed(UPGRADE + b"\x81\x80frame")
    assert (out, guard.phase, guard.pending) == (UPGRADE, Phase.UPGRADING, 7)
    guard.upgrade_answered(accepted=True)
    assert (guard.take(), guard.phase) == (b"\x81\x80frame", Phase.TUNNEL)


def test_guard_drops_bytes_after_a_refused_upgrade() -> None:
    """After a refused upgrade nothing more reaches the server."""
    guard, _ = feed(UPGRADE + b"more")
    guard.upgrade_answered(accepted=False)
    assert (guard.take(), guard.phase, guard.refusal) == (b"", Phase.CLOSED, None)


def test_guard_strips_h2c_upgrades() -> None:
    """An h2c upgrade is served as plain HTTP/1.1: its Upgrade and HTTP2-Settings go."""
    head = (
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
    )
    guard, out = feed(head)
    assert out == b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\n"
    assert guard.phase is Phase.IDLE


@pytest.mark.parametrize(
    ("data", "refusal"),
    [
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
         Refusal(400, "Content-Length together with Transfer-Encoding")),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\ncontent-length: 1\r\n\r\n",
         Refusal(400, "more than one Content-Length")),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\n",
         Refusal(400, "invalid Content-Length")),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 17_000,
         Refusal(431, "request header fields too large")),
        (b"GET / HTTP/2.0\r\n\r\n", Refusal(505, "only HTTP/1.0 and HTTP/1.1 are supported")),
        (b"\x16\x03\x01", Refusal(400, "malformed request line")),
        (b"GET / HTTP/1.1\r\nHost: x\n", Refusal(400, "request lines must end with CRLF")),
        (UPGRADE.replace(b"13\r\n", b"8\r\n"),
         Refusal(426, "Sec-WebSocket-Version must be 13", (("Sec-WebSocket-Version", "13"),))),
        (CHUNKED.replace(b"1;ext=1", b"1 x"), Refusal(400, "malformed chunked body")),
    ],
)  # fmt: skip
def test_guard_refusals(data: bytes, refusal: Refusal) -> None:
    """Each framing fault is refused with its status, and nothing more passes."""
    guard, _ = feed(data)
    assert guard.refusal == refusal
    assert guard.phase is Phase.CLOSED
    guard.receive(GET)
    assert guard.take() == b""


def test_guard_refusal_records_whether_the_head_was_handed_on() -> None:
    """A fault in a body is recorded as such (the server already has that request)."""
    guard, _ = feed(CHUNKED.replace(b"}\r\n0", b"}XX0"))
    assert guard.refused_in is Phase.BODY


VALID = st.sampled_from([GET, POST, CHUNKED])


@settings(max_examples=200, deadline=None)
@given(st.lists(VALID, min_size=1, max_size=5), st.data())
def test_guard_output_does_not_depend_on_how_bytes_are_split(
    requests: list[bytes], data: st.DataObject
) -> None:
    """Valid pipelined requests pass unchanged and are counted, however the reads split them."""
    stream = b"".join(requests)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    guard, out = feed(*chunks)
    assert out == stream
    assert guard.requests == len(requests)
    assert guard.refusal is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_guard_never_fails_on_arbitrary_bytes(data: bytes) -> None:
    """Arbitrary input either passes as framed requests or is refused: never an exception."""
    guard, out = feed(data)
    assert len(out) <= len(data)
    assert guard.refusal is None or guard.phase is Phase.CLOSED
