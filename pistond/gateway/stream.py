"""One client's socket as the HTTP server sees it: the request guard and the read deadlines.

:class:`GuardedStream` wraps an accepted TCP stream. Every byte the client sends goes through a
:class:`~pistond.gateway.guard.RequestGuard` before the HTTP server reads it, and every read runs
under the deadline of what the client owes:

- between requests, once every earlier request is answered: ``idle_timeout`` (keep-alive), then
  the connection closes quietly;
- a started request head: ``head_timeout`` in all, however slowly it trickles in (slowloris);
- a request body: ``body_timeout`` in all.

Only time spent waiting for the client counts. A refused request is answered here with
``{"message": ...}`` and the connection closes: at once when the server has nothing in
progress, else as soon as it has answered what came before (pipelining), and never in the
middle of a response the server already began. After that the server's own writes are dropped.

The server tells the stream when it has finished a response (:meth:`GuardedStream.answered`)
and learns nothing else from it; the stream sees the server's writes to know how a pending
upgrade was answered.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from http import HTTPStatus
from typing import TYPE_CHECKING, Final

import attrs
import trio

from pistond.gateway.guard import DEFAULT_MAX_HEAD_SIZE, Phase, Refusal, RequestGuard

if TYPE_CHECKING:
    from collections.abc import Callable

logger = logging.getLogger(__name__)

READ_SIZE: Final = 64 * 1024
_ACCEPTED_UPGRADE: Final = b"HTTP/1.1 101 "


@attrs.frozen
class ConnectionLimits:
    """Deadlines and sizes that apply to every client connection."""

    idle_timeout: float = 5.0
    """Seconds a kept-alive connection may stay silent once all its requests are answered."""
    head_timeout: float = 10.0
    """Seconds a request head (request line and headers) may take to arrive, from its first byte."""
    body_timeout: float = 30.0
    """Seconds a request body may take to arrive, once its head is complete."""
    max_head_size: int = DEFAULT_MAX_HEAD_SIZE
    """Largest request head, in bytes (more: 431)."""


def refusal_response(refusal: Refusal) -> bytes:
    """A complete HTTP/1.1 answer with a JSON ``{"message"}`` body that closes the connection."""
    body = json.dumps({"message": refusal.message}).encode()
    try:
        reason = HTTPStatus(refusal.status).phrase
    except ValueError:
        reason = ""
    lines = [
        f"HTTP/1.1 {refusal.status} {reason}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
        *(f"{name}: {value}" for name, value in refusal.headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class GuardedStream(trio.abc.HalfCloseableStream):
    """A client's TCP stream behind the request guard and the connection deadlines.

    Args:
        transport: the accepted socket stream; closed with this stream.
        limits: the deadlines and head size.
        client: the peer's address, for log lines.
    """

    def __init__(
        self,
        transport: trio.SocketStream,
        limits: ConnectionLimits,
        client: str = "",
    ) -> None:
        self.transport = transport
        self.limits = limits
        self.client = client
        self.guard = RequestGuard(limits.max_head_size)
        self._answered = 0
        self._ready = bytearray()
        self._changed = trio.lowlevel.ParkingLot()
        self._send_lock = trio.Lock()
        self._read_scope: trio.CancelScope | None = None
        self._spent = 0.0
        self._spent_on: tuple[Phase, int] | None = None
        self._response_begun = False
        self._finished = False
        self._closed = False

    @property
    def socket(self) -> trio.socket.SocketType:
        """The client's socket (the HTTP server reads its addresses)."""
        return self.transport.socket

    @property
    def busy(self) -> bool:
        """Whether the server has a request it has not finished answering."""
        return self._answered < self.guard.requests

    def answered(self) -> None:
        """The server finished answering a request and keeps the connection for the next one."""
        self._answered += 1
        self._response_begun = False
        scope = self._read_scope
        if scope is not None and not self.busy and self.guard.phase is Phase.IDLE:
            scope.deadline = trio.current_time() + self.limits.idle_timeout
        self._changed.unpark_all()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Bytes of the client the guard lets through; b"" ends the connection for the server."""
        while True:
            if self._ready:
                size = len(self._ready) if max_bytes is None else max_bytes
                data = bytes(self._ready[:size])
                del self._ready[:size]
                return data
            self._ready += self.guard.take()
            if self._ready:
                continue
            phase = self.guard.phase
            if self._closed:
                return b""
            if phase is Phase.CLOSED:
                await self._finish()
                return b""
            if phase is Phase.UPGRADING:
                await self._wait_until(lambda: self.guard.phase is not Phase.UPGRADING)
                continue
            received = await self._read(phase)
            if received is None:
                continue
            if not received:
                return b""
            self.guard.receive(received)

    async def _read(self, phase: Phase) -> bytes | None:
        """One read under the phase's deadline; None after a timeout refused the request."""
        key = (phase, self.guard.requests)
        if key != self._spent_on:
            self._spent_on, self._spent = key, 0.0
        budget = self._budget(phase)
        started = trio.current_time()
        data = b""
        with trio.CancelScope(deadline=started + budget) as scope:
            self._read_scope = scope
            try:
                data = await self.transport.receive_some(READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            finally:
                self._read_scope = None
        self._spent += trio.current_time() - started
        if not scope.cancelled_caught:
            return data
        if self._closed:
            return b""
        if self.guard.phase is Phase.IDLE:
            logger.debug("closing an idle connection from %s", self.client)
            return b""
        if phase is Phase.HEAD:
            self.guard.refuse(
                408, f"request head not received within {self.limits.head_timeout:g} s"
            )
        else:
            self.guard.refuse(
                408, f"request body not received within {self.limits.body_timeout:g} s"
            )
        return None

    def _budget(self, phase: Phase) -> float:
        if phase is Phase.HEAD:
            return max(0.0, self.limits.head_timeout - self._spent)
        if phase is Phase.BODY:
            return max(0.0, self.limits.body_timeout - self._spent)
        if phase is Phase.IDLE and not self.busy:
            return self.limits.idle_timeout
        return math.inf

    async def _finish(self) -> None:
        """Answer a refusal when it is safe to, or let a refused upgrade's answer finish."""
        refusal = self.guard.refusal
        if self._finished:
            return
        if refusal is None:
            await self._wait_until(lambda: not self.busy)
            return
        # The refused request is the server's current one once every earlier one is answered;
        # a refused head was never handed on, so then nothing at all is in progress.
        earlier = self.guard.requests - (1 if self.guard.refused_in is Phase.BODY else 0)
        await self._wait_until(lambda: self._answered >= earlier)
        async with self._send_lock:
            self._finished = True
            if self._closed or self._response_begun:
                return
            logger.info(
                "refused a request from %s: %d %s", self.client, refusal.status, refusal.message
            )
            with (
                trio.move_on_after(self.limits.idle_timeout),
                contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError),
            ):
                await self.transport.send_all(refusal_response(refusal))

    async def _wait_until(self, condition: Callable[[], bool]) -> None:
        while not condition() and not self._closed:
            await self._changed.park()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Write the server's bytes (dropped once a refusal decided the connection's end)."""
        async with self._send_lock:
            if self._finished:
                return
            if self.guard.phase is Phase.UPGRADING:
                self.guard.upgrade_answered(accepted=bytes(data[:13]) == _ACCEPTED_UPGRADE)
                self._changed.unpark_all()
            self._response_begun = True
            await self.transport.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        """As the transport's."""
        await self.transport.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        """Shut down the sending side."""
        async with self._send_lock:
            await self.transport.send_eof()

    async def aclose(self) -> None:
        """Close the connection; a waiting read returns b""."""
        self._closed = True
        self._changed.unpark_all()
        if self._read_scope is not None:
            self._read_scope.cancel()
        await self.transport.aclose()
