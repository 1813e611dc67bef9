"""The low-level async msgpack-rpc client: calls by method name, notifications by subscription.

This layer wraps a :class:`~pistond.rpc.connection.Connection` on a Unix socket (or any trio
stream) and exposes :class:`RpcClient`: :meth:`RpcClient.call` returns a method's result or
raises the :class:`~pistond.errors.PistondError` subclass of the error's code, and
:meth:`RpcClient.subscribe` gives bounded streams of notifications. The typed client built on it
is :mod:`pistond.client`.

Example::

    async with open_rpc_client("/run/pistond/pistond.sock") as client:
        print(await client.call("ping"))
"""

from __future__ import annotations

import logging
import os
import socket
from collections import deque
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Final, Self

import attrs
import trio

from pistond.errors import (
    ErrorCode,
    Forbidden,
    InternalError,
    InvalidParams,
    InvalidRequest,
    JobKilled,
    JobNotFound,
    MethodNotFound,
    Overloaded,
    PackageError,
    PackageNotFound,
    PistondError,
    RuntimeUnknown,
)
from pistond.rpc.connection import Connection, ConnectionLost
from pistond.rpc.framing import DEFAULT_MAX_MESSAGE_SIZE

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from pistond.rpc.connection import Peer
    from pistond.rpc.messages import Notification

logger = logging.getLogger(__name__)

DEFAULT_SUBSCRIPTION_BUFFER: Final = 1024
"""Notifications one subscription holds before it overflows."""

ERROR_CLASSES: Final[dict[str, type[PistondError]]] = {
    str(cls.code): cls
    for cls in (
        InvalidRequest,
        MethodNotFound,
        InvalidParams,
        RuntimeUnknown,
        Overloaded,
        PackageNotFound,
        PackageError,
        JobNotFound,
        Forbidden,
        JobKilled,
        InternalError,
    )
}
"""The PistondError subclass of each PROTOCOL.md error code."""


class RemoteError(PistondError):
    """Raised by :meth:`RpcClient.call` for an error code this client does not know.

    ``code`` stays ``internal``; the code the daemon sent is ``remote_code`` and goes back out
    unchanged in :meth:`to_wire`.
    """

    code = ErrorCode.INTERNAL

    def __init__(self, remote_code: str, message: str, data: Any = None) -> None:
        super().__init__(message, data)
        self.remote_code = remote_code

    def to_wire(self) -> dict[str, Any]:
        """The error map as the daemon sent it."""
        wire = super().to_wire()
        wire["code"] = self.remote_code
        return wire


def error_from_wire(error: dict[str, Any]) -> PistondError:
    """The exception for a PROTOCOL.md error map (as sent in a response or ``job.done``)."""
    code = str(error.get("code"))
    message = error.get("message")
    text = message if isinstance(message, str) else f"{code} error"
    data = error.get("data")
    cls = ERROR_CLASSES.get(code)
    if cls is None:
        return RemoteError(code, text, data)
    return cls(text, data)


def sole_exception(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception inside ``group`` (however nested), or ``group`` when it holds more."""
    leaves: list[BaseException] = []

    def collect(error: BaseException) -> None:
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:
                collect(inner)
        else:
            leaves.append(error)

    collect(group)
    return leaves[0] if len(leaves) == 1 else group


class NotificationOverflow(Exception):
    """Raised by a :class:`Subscription` whose buffer filled up: later notifications were lost."""


@attrs.define(eq=False)
class Subscription:
    """A bounded stream of the notifications whose method starts with ``method_prefix``.

    Iterate it (``async for notification in subscription``) or call :meth:`receive`.

    Buffering:
        The connection's reader never waits for a subscriber. When ``max_buffer``
        notifications are waiting, the next one closes the subscription instead of growing
        memory: the buffered ones are still delivered, then :class:`NotificationOverflow` is
        raised. Other subscriptions and calls on the connection carry on. When the connection
        is lost, buffered notifications are delivered, then
        :class:`~pistond.rpc.connection.ConnectionLost` is raised. After :meth:`close`,
        iteration ends.
    """

    method_prefix: str | None
    max_buffer: int
    accept: Callable[[Notification], bool] | None = None
    """Further filter on matching notifications; see :meth:`retain`."""
    _client: RpcClient | None = None
    _buffer: deque[Notification] = attrs.field(init=False, factory=deque)
    _lot: trio.lowlevel.ParkingLot = attrs.field(init=False, factory=trio.lowlevel.ParkingLot)
    _end: BaseException | None = attrs.field(init=False, default=None)
    _closed: bool = attrs.field(init=False, default=False)

    def matches(self, notification: Notification) -> bool:
        """Whether this subscription wants a notification."""
        if self.method_prefix is not None and not notification.method.startswith(
            self.method_prefix
        ):
            return False
        return self.accept is None or self.accept(notification)

    def retain(self, accept: Callable[[Notification], bool]) -> None:
        """Narrow the subscription to notifications ``accept`` returns True for, buffered ones too.

        Lets a caller subscribe before a call whose notifications may come before its reply
        (``job.start``), then keep only those of the id the reply names.
        """
        self.accept = accept
        self._buffer = deque(n for n in self._buffer if self.matches(n))

    def push(self, notification: Notification) -> None:
        """Queue a notification without waiting; overflow ends the subscription."""
        if self._closed:
            return
        if len(self._buffer) >= self.max_buffer:
            logger.warning(
                "subscription to %r overflowed after %d notifications; it is closed",
                self.method_prefix,
                self.max_buffer,
            )
            self._finish(
                NotificationOverflow(
                    f"more than {self.max_buffer} notifications were waiting; later ones were lost"
                )
            )
            return
        self._buffer.append(notification)
        self._lot.unpark_all()

    def _finish(self, end: BaseException | None) -> None:
        if self._closed:
            return
        self._closed = True
        self._end = end
        if self._client is not None:
            self._client.unsubscribe(self)
        self._lot.unpark_all()

    def close(self) -> None:
        """Stop receiving; waiting and later receives end the iteration."""
        self._finish(None)
        self._buffer.clear()

    def connection_lost(self) -> None:
        """Mark the end of the connection: receives raise ConnectionLost after the buffer."""
        self._finish(ConnectionLost("connection to the daemon was lost"))

    async def receive(self) -> Notification:
        """The next notification, waiting for it.

        Raises:
            trio.EndOfChannel: the subscription was closed.
            NotificationOverflow: the buffer overflowed and everything before was delivered.
            ConnectionLost: the connection closed and everything before was delivered.
        """
        while not self._buffer:
            if self._closed:
                if self._end is not None:
                    raise self._end
                raise trio.EndOfChannel
            await self._lot.park()
        await trio.lowlevel.checkpoint()
        return self._buffer.popleft()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Notification:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@attrs.define(eq=False)
class RpcClient:
    """A msgpack-rpc connection to the daemon; make one with :func:`open_rpc_client`.

    Many calls may be in flight at once from different tasks; responses are matched by msgid.
    """

    _connection: Connection
    _subscriptions: list[Subscription] = attrs.field(init=False, factory=list)
    _lost: bool = attrs.field(init=False, default=False)

    @classmethod
    @asynccontextmanager
    async def from_stream(
        cls,
        stream: trio.abc.Stream,
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> AsyncIterator[RpcClient]:
        """A client over an already connected stream, closed when the block exits.

        Error handling:
            The connection's reader runs in a nursery around the block, yet an exception the
            block raises leaves it as itself (a :class:`~pistond.errors.PistondError`, an
            ``OSError``, ``Cancelled``...), never wrapped in an exception group; only several
            errors at once stay a group.
        """
        connection = Connection(stream, max_message_size=max_message_size)
        client = cls(connection)
        connection.on_notification = client._deliver
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(client._run)
                try:
                    yield client
                finally:
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            raise sole_exception(group) from None

    async def _run(self, *, task_status: trio.TaskStatus[Peer] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await self._connection.run(task_status=task_status)
        finally:
            self._lost = True
            for subscription in list(self._subscriptions):
                subscription.connection_lost()

    @property
    def closed(self) -> bool:
        """True once the connection is closed; calls then raise ConnectionLost."""
        return self._connection.closed

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Call a method and return its result.

        Raises:
            PistondError: the daemon answered with an error; the subclass matches its code
                (:class:`RemoteError` for a code this client does not know).
            ConnectionLost: the connection closed before the reply.
        """
        response = await self._connection.call(method, {} if params is None else params)
        if response.error is not None:
            raise error_from_wire(response.error)
        return response.result

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        """Send a notification (the daemon ignores those it does not know)."""
        await self._connection.notify(method, {} if params is None else params)

    def subscribe(
        self,
        method_prefix: str | None = None,
        *,
        accept: Callable[[Notification], bool] | None = None,
        max_buffer: int = DEFAULT_SUBSCRIPTION_BUFFER,
    ) -> Subscription:
        """Start receiving notifications whose method starts with ``method_prefix``.

        Use it as a context manager, or call :meth:`Subscription.close`. See
        :class:`Subscription` for what happens when its buffer is full.
        """
        if max_buffer < 1:
            raise ValueError("max_buffer must be at least 1")
        subscription = Subscription(method_prefix, max_buffer, accept, self)
        if self._lost:
            subscription.connection_lost()
        else:
            self._subscriptions.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop delivering to a subscription (its close() calls this)."""
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    def _deliver(self, notification: Notification) -> None:
        delivered = False
        for subscription in list(self._subscriptions):
            if subscription.matches(notification):
                subscription.push(notification)
                delivered = True
        if not delivered:
            logger.debug("dropping notification %r: no subscriber", notification.method)


@asynccontextmanager
async def open_rpc_client(
    target: str | os.PathLike[str] | socket.socket,
    *,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
) -> AsyncIterator[RpcClient]:
    """Connect to the daemon's Unix socket (a path, or an already connected socket).

    Raises:
        OSError: the socket cannot be reached (``FileNotFoundError``,
            ``ConnectionRefusedError``, ``PermissionError``).
    """
    if isinstance(target, socket.socket):
        stream: trio.abc.Stream = trio.SocketStream(trio.socket.from_stdlib_socket(target))
    else:
        stream = await trio.open_unix_socket(os.fspath(target))
    async with RpcClient.from_stream(stream, max_message_size=max_message_size) as client:
        yield client
