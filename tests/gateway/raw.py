"""Raw HTTP/1.1 and WebSocket bytes for hostile-traffic tests: no client library in the way."""

from __future__ import annotations

import base64
import os
from typing import Final
from urllib.parse import urlsplit

import attrs
import trio

KEY: Final = base64.b64encode(b"sixteen byte key").decode()


def address(url: str) -> tuple[str, int]:
    """Host and port of an ``http://host:port`` URL."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    return parts.hostname, parts.port


def upgrade_head(
    path: str = "/api/v2/connect",
    *,
    key: str = KEY,
    version: str = "13",
    method: str = "GET",
    extra: str = "",
) -> bytes:
    """A WebSocket opening handshake request."""
    return (
        f"{method} {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: {version}\r\n{extra}\r\n"
    ).encode()


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    masked: bool = True,
    rsv: int = 0,
    length: int | None = None,
) -> bytes:
    """One WebSocket frame as a client sends it (``length`` may lie about the payload)."""
    size = len(payload) if length is None else length
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    mask_bit = 0x80 if masked else 0
    if size < 126:
        head = bytes([first, mask_bit | size])
    elif size < 1 << 16:
        head = bytes([first, mask_bit | 126]) + size.to_bytes(2, "big")
    else:
        head = bytes([first, mask_bit | 127]) + size.to_bytes(8, "big")
    if masked:
        key = os.urandom(4)
        payload = bytes(byte ^ key[index % 4] for index, byte in enumerate(payload))
        head += key
    return head + payload


@attrs.frozen
class Exchange:
    """What the server sent back on one raw connection."""

    data: bytes
    closed: bool
    """The server closed the connection (end of stream or reset) within the wait."""

    @property
    def status(self) -> int | None:
        """The status code of the first response, if one came."""
        if not self.data.startswith(b"HTTP/1."):
            return None
        return int(self.data.split(b" ", 2)[1])


async def open_raw(url: str, source: str | None = None) -> trio.SocketStream:
    """A TCP connection to the gateway, from the loopback address ``source`` if given."""
    host, port = address(url)
    return await trio.open_tcp_stream(host, port, local_address=source)


async def read_until_close(stream: trio.SocketStream, wait: float) -> Exchange:
    """What the server sends until it closes, or until ``wait`` seconds have passed."""
    received = bytearray()
    closed = False
    with trio.move_on_after(wait):
        try:
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    closed = True
                    break
                received += data
        except trio.BrokenResourceError:
            closed = True
    return Exchange(bytes(received), closed)


async def exchange(
    url: str,
    *chunks: bytes,
    wait: float = 3.0,
    pause: float = 0.05,
) -> Exchange:
    """Send ``chunks`` (each in one write, ``pause`` apart), then read until close or ``wait``."""
    stream = await open_raw(url)
    received = bytearray()
    closed = False
    async with stream:
        try:
            for index, chunk in enumerate(chunks):
                if index:
                    await trio.sleep(pause)
                await stream.send_all(chunk)
        except trio.BrokenResourceError:
            closed = True
        answer = await read_until_close(stream, wait)
    return Exchange(bytes(received) + answer.data, closed or answer.closed)


ISSUE_9_REQUEST: Final = (
    b"GET /api/v2/connect HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n\x00"
)
"""The request of issue 9: a WebSocket upgrade with one byte after it in the same packet."""
GET: Final = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
INIT: Final = b'{"type":"init","language":"python","version":"*","files":[{"content":"print(1)"}]}'

HTTP_BATTERY: Final[list[tuple[str, bytes, int | None]]] = [
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

WS_BATTERY: Final[list[tuple[str, bytes]]] = [
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
