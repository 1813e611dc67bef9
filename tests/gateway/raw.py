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
