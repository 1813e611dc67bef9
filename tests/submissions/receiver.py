"""A callback receiver for tests: an HTTP/1.1 server on 127.0.0.1 (port 0), written with h11.

It records each request (method, target, headers, body) and answers with the next scripted
status (the last one repeats); ``delay`` holds every answer back, to reach timeouts.
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

import attrs
import h11
import trio

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


@attrs.frozen
class Received:
    """One request the receiver got."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


@attrs.define(eq=False)
class Receiver:
    """The receiver's script and records."""

    statuses: list[int] = attrs.field(factory=lambda: [200])
    delay: float = 0.0
    received: list[Received] = attrs.field(factory=list)
    connections: int = 0
    port: int = 0
    arrived: trio.Event = attrs.field(factory=trio.Event)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    async def wait_for(self, count: int, seconds: float = 20) -> list[Received]:
        """Wait until ``count`` requests arrived; all of them."""
        with trio.fail_after(seconds):
            while len(self.received) < count:
                await self.arrived.wait()
                self.arrived = trio.Event()
        return self.received

    async def serve_one(self, stream: trio.SocketStream) -> None:
        """Read one request, record it, answer it, close."""
        self.connections += 1
        connection = h11.Connection(h11.SERVER)
        request: h11.Request | None = None
        body = b""
        async with stream:
            while True:
                event = connection.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    connection.receive_data(data)
                elif isinstance(event, h11.Request):
                    request = event
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
            assert request is not None
            self.received.append(
                Received(
                    method=request.method.decode(),
                    target=request.target.decode(),
                    headers={k.decode().lower(): v.decode() for k, v in request.headers},
                    body=body,
                )
            )
            self.arrived.set()
            status = self.statuses[min(len(self.received), len(self.statuses)) - 1]
            await trio.sleep(self.delay)
            headers = [("content-length", "2"), ("connection", "close")]
            if 300 <= status < 400:
                headers.append(("location", "http://127.0.0.1:9/elsewhere"))
            await stream.send_all(
                connection.send(h11.Response(status_code=status, headers=headers))
            )
            await stream.send_all(connection.send(h11.Data(data=b"ok")))
            await stream.send_all(connection.send(h11.EndOfMessage()))


@asynccontextmanager
async def open_receiver(**script: Any) -> AsyncIterator[Receiver]:
    """A running receiver (see :class:`Receiver` for the script's fields)."""
    receiver = Receiver(**script)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            partial(trio.serve_tcp, receiver.serve_one, 0, host="127.0.0.1")
        )
        receiver.port = listeners[0].socket.getsockname()[1]
        yield receiver
        nursery.cancel_scope.cancel()
