"""One msgpack-rpc peer over a trio stream: reader task, pending calls, dispatch, write lock.

This layer wraps a :class:`trio.abc.Stream` with :mod:`pistond.rpc.framing` and
:mod:`pistond.rpc.messages`, and exposes :class:`Connection`: both sides of the protocol in one
object. As a server it dispatches each request to a :class:`Dispatcher` in its own task, so
replies go out in completion order; as a client it matches responses to pending calls by msgid.

Resource handling:
    At most ``max_in_flight`` requests are handled at once per connection; beyond that the
    reader stops reading, so a flooding peer meets the socket's back-pressure instead of
    growing our memory. A message whose first bytes arrived must be complete within
    ``frame_timeout`` seconds, or the connection closes (a peer cannot hold a connection, and
    its buffer, with half a frame). One write lock serialises sends; a send that makes no
    progress for ``send_timeout`` seconds closes the connection. Notifications the server
    queues with :meth:`Peer.notify_nowait` wait in a buffer of at most
    ``notification_buffer`` bytes, drained by a writer task; past it the call raises
    :class:`NotificationBufferFull` (the API layer then kills the job it reports on), so a
    peer that does not read never makes the daemon hold more. When the connection closes (end
    of stream, protocol error, send failure), its nursery is cancelled: handlers still running
    and every task the API layer started in :attr:`Peer.nursery` are cancelled with it.

Error handling:
    A :class:`~pistond.errors.PistondError` raised by the dispatcher is answered with its
    ``to_wire()`` map. Any other exception is logged with an incident id and answered
    ``internal`` with only that id. A malformed message whose msgid is known is answered
    ``invalid_request`` (or ``invalid_params``); one whose msgid is unknown closes the
    connection, as does any framing error (after an error reply when the msgid is known).
"""

from __future__ import annotations

import itertools
import logging
import math
import socket
import struct
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any, Final, Protocol

import attrs
import trio

from pistond.errors import ErrorCode, InternalError, InvalidRequest, MethodNotFound, PistondError
from pistond.rpc.framing import DEFAULT_MAX_MESSAGE_SIZE, FramingError, MessageDecoder, pack
from pistond.rpc.messages import (
    MAX_MSGID,
    MalformedMessage,
    Message,
    Notification,
    Request,
    Response,
    parse_message,
    to_wire,
)

if TYPE_CHECKING:
    from collections.abc import Callable

logger = logging.getLogger(__name__)

READ_SIZE: Final = 64 * 1024
DEFAULT_MAX_IN_FLIGHT: Final = 64
DEFAULT_SEND_TIMEOUT: Final = 60.0
DEFAULT_FRAME_TIMEOUT: Final = 30.0
"""Seconds a started message may take to arrive completely."""
DEFAULT_NOTIFICATION_BUFFER: Final = 4 * 1024 * 1024
"""Bytes of notifications queued for a peer before queueing more fails."""
CLOSE_TIMEOUT: Final = 5.0
"""Seconds the last error reply before a close may take."""
_PEERCRED: Final = struct.Struct("3i")


@attrs.frozen
class PeerCredentials:
    """The peer process's identity as the kernel saw it at connect time (SO_PEERCRED)."""

    pid: int
    uid: int
    gid: int


def read_peer_credentials(sock: trio.socket.SocketType | socket.socket) -> PeerCredentials:
    """SO_PEERCRED of a connected Unix socket.

    Raises:
        OSError: the socket is not a connected Unix socket.
    """
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    pid, uid, gid = _PEERCRED.unpack(raw)
    return PeerCredentials(pid=pid, uid=uid, gid=gid)


class ConnectionLost(PistondError, trio.BrokenResourceError):
    """Raised by :meth:`Connection.call` when the connection closes before the reply came.

    It is also a :class:`trio.BrokenResourceError`, so code that handles broken streams
    handles a lost daemon connection the same way.
    """

    code = ErrorCode.INTERNAL


class NotificationBufferFull(Exception):
    """Raised by :meth:`Peer.notify_nowait` when the peer left too many notifications unread."""


@attrs.define(eq=False)
class Peer:
    """The other end of a server connection, as the dispatcher sees it."""

    credentials: PeerCredentials
    nursery: trio.Nursery
    """The connection's nursery: tasks started here are cancelled when the connection closes.

    An exception escaping such a task closes the connection (and is logged by the server).
    """
    state: dict[str, Any]
    """Per-connection state for the API layer (e.g. its interactive jobs)."""
    _connection: Connection

    @property
    def closed(self) -> bool:
        """True once the connection is closed; notifications are then dropped."""
        return self._connection.closed

    async def notify(self, method: str, params: dict[str, Any]) -> None:
        """Queue ``[2, method, [params]]``, waiting while the buffer is full.

        Does nothing once the connection is closed.

        Raises:
            TypeError: ``params`` holds something msgpack cannot encode.
        """
        await self._connection.queue_notification(method, params)

    def notify_nowait(self, method: str, params: dict[str, Any], *, force: bool = False) -> None:
        """Queue ``[2, method, [params]]`` without waiting, in order with every other one.

        Args:
            method: the notification's method.
            params: its named fields.
            force: queue it even past the buffer's size (for a last, small notification).

        Raises:
            NotificationBufferFull: ``notification_buffer`` bytes are already waiting.
            TypeError: ``params`` holds something msgpack cannot encode.
        """
        self._connection.notify_nowait(method, params, force=force)


class Dispatcher(Protocol):
    """What a server connection calls for each request.

    Params arrive already unwrapped from the one-element array (``[]`` gives ``{}``), with
    str keys. Return the result (msgpack-ready: dicts, lists, str, bytes, numbers, None);
    raise a :class:`~pistond.errors.PistondError` subclass to answer with an error.
    """

    async def __call__(self, method: str, params: dict[str, Any], peer: Peer) -> Any: ...


@attrs.define(eq=False)
class _PendingCall:
    done: trio.Event = attrs.field(factory=trio.Event)
    response: Response | None = None


def new_incident_id() -> str:
    """A short random id that ties an ``internal`` reply to its log line."""
    return uuid.uuid4().hex[:12]


@attrs.define(eq=False)
class Connection:
    """One peer on a stream; call :meth:`run` in a task for as long as the connection lives.

    Args:
        stream: the byte stream; the connection closes it when :meth:`run` ends.
        credentials: the peer's SO_PEERCRED (server side); handlers see it on :class:`Peer`.
        dispatcher: handles incoming requests; None answers each with ``method_not_found``.
        on_notification: called (synchronously, in the reader task) with each notification.
        max_message_size: largest incoming message, in bytes.
        max_in_flight: most requests handled at once before the reader stops reading.
        send_timeout: seconds one send may stall before the connection is closed.
        frame_timeout: seconds a started message may take to complete.
        notification_buffer: bytes of queued notifications (see :meth:`Peer.notify_nowait`).
    """

    stream: trio.abc.Stream
    credentials: PeerCredentials = PeerCredentials(pid=0, uid=-1, gid=-1)
    dispatcher: Dispatcher | None = None
    on_notification: Callable[[Notification], None] | None = None
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    send_timeout: float = DEFAULT_SEND_TIMEOUT
    frame_timeout: float = DEFAULT_FRAME_TIMEOUT
    notification_buffer: int = DEFAULT_NOTIFICATION_BUFFER
    _write_lock: trio.Lock = attrs.field(init=False, factory=trio.Lock)
    _outbox: deque[bytes] = attrs.field(init=False, factory=deque)
    _outbox_size: int = attrs.field(init=False, default=0)
    _outbox_lot: trio.lowlevel.ParkingLot = attrs.field(
        init=False, factory=trio.lowlevel.ParkingLot
    )
    _in_flight: trio.Semaphore = attrs.field(init=False)
    _pending: dict[int, _PendingCall] = attrs.field(init=False, factory=dict)
    _msgids: itertools.count[int] = attrs.field(init=False, factory=itertools.count)
    _nursery: trio.Nursery | None = attrs.field(init=False, default=None)
    _closed: bool = attrs.field(init=False, default=False)
    _closed_event: trio.Event = attrs.field(init=False, factory=trio.Event)
    _started: bool = attrs.field(init=False, default=False)

    def __attrs_post_init__(self) -> None:
        self._in_flight = trio.Semaphore(self.max_in_flight)

    @property
    def closed(self) -> bool:
        """True once the connection has stopped reading and sending."""
        return self._closed

    async def wait_closed(self) -> None:
        """Wait until the connection has closed."""
        await self._closed_event.wait()

    async def run(self, *, task_status: trio.TaskStatus[Peer] = trio.TASK_STATUS_IGNORED) -> None:
        """Read and dispatch until the peer closes or breaks the protocol, then close.

        Reports the :class:`Peer` through ``task_status`` once reading has started. Returns
        normally when the connection ends for any peer-caused reason.
        """
        if self._started:
            raise RuntimeError("Connection.run() may only be called once")
        self._started = True
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                peer = Peer(self.credentials, nursery, {}, self)
                nursery.start_soon(self._write_outbox)
                task_status.started(peer)
                await self._read_loop(peer)
                self._close()
        finally:
            self._close()
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(self.stream)

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._closed_event.set()
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()
        for pending in self._pending.values():
            pending.done.set()
        self._outbox.clear()
        self._outbox_size = 0
        self._outbox_lot.unpark_all()

    async def call(self, method: str, params: dict[str, Any]) -> Response:
        """Send a request and wait for its response (error responses are returned too).

        Raises:
            ConnectionLost: the connection closed before the response came.
            TypeError: ``params`` holds something msgpack cannot encode.
        """
        if self._closed:
            raise ConnectionLost("connection to the daemon is closed")
        msgid = self._next_msgid()
        data = pack(to_wire(Request(msgid, method, params)))
        pending = self._pending[msgid] = _PendingCall()
        try:
            await self._send(data)
            await pending.done.wait()
        finally:
            del self._pending[msgid]
        if pending.response is None:
            raise ConnectionLost("connection to the daemon was lost before the reply")
        return pending.response

    async def notify(self, method: str, params: dict[str, Any]) -> None:
        """Send a notification now; does nothing once the connection is closed."""
        data = pack(to_wire(Notification(method, params)))
        if not self._closed:
            await self._send(data)

    def notify_nowait(self, method: str, params: dict[str, Any], *, force: bool = False) -> None:
        """Queue a notification for the writer task (see :meth:`Peer.notify_nowait`)."""
        data = pack(to_wire(Notification(method, params)))
        if self._closed:
            return
        if not force and not self._has_room(len(data)):
            raise NotificationBufferFull(
                f"more than {self.notification_buffer} bytes of notifications are unread"
            )
        self._enqueue(data)

    async def queue_notification(self, method: str, params: dict[str, Any]) -> None:
        """Queue a notification, waiting while the buffer has no room for it."""
        await self._enqueue_when_room(pack(to_wire(Notification(method, params))))

    def _has_room(self, size: int) -> bool:
        return not self._outbox or self._outbox_size + size <= self.notification_buffer

    def _enqueue(self, data: bytes) -> None:
        self._outbox.append(data)
        self._outbox_size += len(data)
        self._outbox_lot.unpark_all()

    async def _enqueue_when_room(self, data: bytes) -> None:
        """Queue ``data`` behind everything queued before, once the buffer has room for it."""
        while not self._closed and not self._has_room(len(data)):
            await self._outbox_lot.park()
        if not self._closed:
            self._enqueue(data)
        await trio.lowlevel.checkpoint()

    async def _write_outbox(self) -> None:
        """Send queued responses and notifications in order, as fast as the peer reads them."""
        while not self._closed:
            if not self._outbox:
                await self._outbox_lot.park()
                continue
            data = self._outbox.popleft()
            self._outbox_size -= len(data)
            self._outbox_lot.unpark_all()
            await self._send(data)

    def _next_msgid(self) -> int:
        while True:
            msgid = next(self._msgids) & MAX_MSGID
            if msgid not in self._pending:
                return msgid

    async def _send(self, data: bytes) -> None:
        """Write one encoded message; on failure or stall the connection closes."""
        async with self._write_lock:
            if self._closed:
                return
            with trio.move_on_after(self.send_timeout) as scope:
                try:
                    await self.stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    logger.debug("peer %s went away while we were sending", self.credentials)
                    self._close()
            if scope.cancelled_caught:
                logger.warning(
                    "closing the connection of pid %d: a send stalled for %.0f s",
                    self.credentials.pid,
                    self.send_timeout,
                )
                self._close()

    async def _read_loop(self, peer: Peer) -> None:
        decoder = MessageDecoder(self.max_message_size)
        deadline = math.inf
        started_at = -1
        while not self._closed:
            with trio.move_on_at(deadline) as scope:
                try:
                    data = await self.stream.receive_some(READ_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
            if scope.cancelled_caught:
                await self._frame_timed_out(decoder)
                return
            if not data:
                return
            decoder.feed(data)
            try:
                for value in decoder:
                    if not await self._receive(value, peer):
                        return
            except FramingError as exc:
                logger.info("closing the connection of pid %d: %s", self.credentials.pid, exc)
                if exc.msgid is not None:
                    error = InvalidRequest(exc.reason).to_wire()
                    await self._send_final(Response(exc.msgid, error))
                return
            if not decoder.pending:
                deadline = math.inf
            elif decoder.message_start != started_at:
                started_at = decoder.message_start
                deadline = trio.current_time() + self.frame_timeout

    async def _frame_timed_out(self, decoder: MessageDecoder) -> None:
        reason = f"a message was not completed within {self.frame_timeout:g} s"
        logger.info("closing the connection of pid %d: %s", self.credentials.pid, reason)
        msgid = decoder.pending_msgid()
        if msgid is not None:
            await self._send_final(Response(msgid, InvalidRequest(reason).to_wire()))

    async def _send_final(self, response: Response) -> None:
        with trio.move_on_after(CLOSE_TIMEOUT):
            await self._send(pack(to_wire(response)))

    async def _receive(self, value: Any, peer: Peer) -> bool:
        """Act on one decoded value; False when the connection must close."""
        try:
            message = parse_message(value)
        except MalformedMessage as exc:
            if exc.msgid is None:
                logger.info(
                    "closing the connection of pid %d: %s", self.credentials.pid, exc.error.message
                )
                return False
            await self._send(pack(to_wire(Response(exc.msgid, exc.error.to_wire()))))
            return True
        await self._route(message, peer)
        return True

    async def _route(self, message: Message, peer: Peer) -> None:
        if isinstance(message, Request):
            await self._in_flight.acquire()
            peer.nursery.start_soon(self._handle, message, peer)
        elif isinstance(message, Response):
            pending = self._pending.get(message.msgid)
            if pending is None or pending.done.is_set():
                logger.debug("ignoring a response to unknown msgid %d", message.msgid)
                return
            pending.response = message
            pending.done.set()
        elif self.on_notification is not None:
            self.on_notification(message)

    async def _handle(self, request: Request, peer: Peer) -> None:
        """Run one request through the dispatcher and send its reply."""
        try:
            response = await self._dispatch(request, peer)
            # Behind the notifications the handler queued, so a peer sees them first.
            await self._enqueue_when_room(self._encode_response(request, response))
        finally:
            self._in_flight.release()

    async def _dispatch(self, request: Request, peer: Peer) -> Response:
        if self.dispatcher is None:
            error = MethodNotFound(f"method {request.method!r} not found")
            return Response(request.msgid, error.to_wire())
        try:
            result = await self.dispatcher(request.method, request.params, peer)
        except PistondError as exc:
            return Response(request.msgid, exc.to_wire())
        except Exception:
            incident = new_incident_id()
            logger.error(
                "request %r from pid %d failed (incident %s)",
                request.method,
                self.credentials.pid,
                incident,
                exc_info=True,
            )
            return Response(request.msgid, _internal(incident))
        return Response(request.msgid, None, result)

    def _encode_response(self, request: Request, response: Response) -> bytes:
        """Pack a response; a result that cannot be sent becomes an ``internal`` error."""
        try:
            data = pack(to_wire(response))
        except (TypeError, ValueError, OverflowError):
            incident = new_incident_id()
            logger.error(
                "result of %r cannot be encoded (incident %s)",
                request.method,
                incident,
                exc_info=True,
            )
            return pack(to_wire(Response(request.msgid, _internal(incident))))
        if len(data) > self.max_message_size:
            incident = new_incident_id()
            logger.error(
                "result of %r is %d bytes, over the maximum message size (incident %s)",
                request.method,
                len(data),
                incident,
            )
            return pack(to_wire(Response(request.msgid, _internal(incident))))
        return data


def _internal(incident: str) -> dict[str, Any]:
    return InternalError(f"internal error (incident {incident})").to_wire()
