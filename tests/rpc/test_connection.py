"""One connection: concurrent dispatch, error replies, back-pressure, close semantics."""

from __future__ import annotations

import itertools
import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing

from pistond.errors import Forbidden, InternalError, JobNotFound, MethodNotFound
from pistond.rpc.connection import (
    Connection,
    ConnectionLost,
    NotificationBufferFull,
    Peer,
    PeerCredentials,
)
from pistond.rpc.framing import MessageDecoder, pack
from pistond.testing import open_memory_rpc

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

CREDENTIALS = PeerCredentials(pid=1234, uid=1000, gid=1000)


class RawPeer:
    """The client end of a memory stream: raw bytes out, decoded values in."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.decoder = MessageDecoder()

    async def send(self, value: Any) -> None:
        await self.stream.send_all(pack(value))

    async def receive(self) -> Any:
        while True:
            for value in self.decoder:
                return value
            data = await self.stream.receive_some(65536)
            if not data:
                raise EOFError
            self.decoder.feed(data)


@asynccontextmanager
async def serve_raw(dispatcher: Any, **options: Any) -> AsyncIterator[tuple[RawPeer, Connection]]:
    client, server = trio.testing.memory_stream_pair()
    connection = Connection(server, credentials=CREDENTIALS, dispatcher=dispatcher, **options)
    async with trio.open_nursery() as nursery:
        await nursery.start(connection.run)
        yield RawPeer(client), connection
        nursery.cancel_scope.cancel()


async def echo(method: str, params: dict[str, Any], peer: Peer) -> Any:
    if method == "sleep":
        await trio.sleep(params["seconds"])
        return params["seconds"]
    if method == "whoami":
        return [peer.credentials.pid, peer.credentials.uid, peer.credentials.gid]
    if method == "forbidden":
        raise Forbidden("package changes are for root", data={"uid": peer.credentials.uid})
    if method == "crash":
        raise RuntimeError("secret /etc/shadow detail")
    if method == "unencodable":
        return object()
    if method == "notify":
        for index in range(params["count"]):
            await peer.notify("job.output", {"job": "j", "index": index})
        return "sent"
    raise MethodNotFound(f"method {method!r} not found")


async def test_connection_replies_in_completion_order() -> None:
    """Concurrent calls on one connection are answered as each completes, not in order sent."""
    async with serve_raw(echo) as (peer, _):
        for msgid, seconds in enumerate([0.3, 0.1, 0.2]):
            await peer.send([0, msgid, "sleep", [{"seconds": seconds}]])
        with trio.fail_after(5):
            replies = [await peer.receive() for _ in range(3)]
    assert replies == [[1, 1, None, 0.1], [1, 2, None, 0.2], [1, 0, None, 0.3]]


async def test_connection_peer_credentials_reach_dispatcher() -> None:
    """The dispatcher sees the credentials the connection was opened with."""
    async with open_memory_rpc(echo, CREDENTIALS) as client:
        assert await client.call("whoami") == [1234, 1000, 1000]


async def test_connection_pistond_error_reply() -> None:
    """A PistondError from the dispatcher is answered with its to_wire() map."""
    async with serve_raw(echo) as (peer, _):
        await peer.send([0, 4, "forbidden", []])
        reply = await peer.receive()
    assert reply == [
        1,
        4,
        {"code": "forbidden", "message": "package changes are for root", "data": {"uid": 1000}},
        None,
    ]


async def test_connection_unexpected_exception_is_internal_with_incident(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An unexpected exception is logged with an incident id and answered without internals."""
    caplog.set_level(logging.ERROR, logger="pistond.rpc.connection")
    async with serve_raw(echo) as (peer, _):
        await peer.send([0, 1, "crash", []])
        _, msgid, error, result = await peer.receive()
    assert (msgid, result) == (1, None)
    assert error["code"] == "internal"
    assert error["message"].startswith("internal error (incident ")
    assert "shadow" not in error["message"]
    assert "Traceback" not in error["message"]
    incident = error["message"].removeprefix("internal error (incident ").removesuffix(")")
    assert any(incident in record.getMessage() for record in caplog.records)
    assert any(record.exc_info for record in caplog.records)


async def test_connection_unencodable_result_is_internal() -> None:
    """A result msgpack cannot encode becomes an internal error, not a dead connection."""
    async with open_memory_rpc(echo) as client:
        with pytest.raises(InternalError, match=r"^internal error \(incident [0-9a-f]{12}\)$"):
            await client.call("unencodable")
        assert await client.call("sleep", {"seconds": 0}) == 0


async def test_connection_malformed_with_msgid_gets_error_and_continues() -> None:
    """A malformed request whose msgid is known is answered invalid_request; the peer stays."""
    async with serve_raw(echo) as (peer, _):
        await peer.send([0, 8, 42, []])
        assert await peer.receive() == [
            1,
            8,
            {"code": "invalid_request", "message": "method must be a string"},
            None,
        ]
        await peer.send([0, 9, "m", [{b"bin-key": 1}]])
        assert (await peer.receive())[2]["code"] == "invalid_params"
        await peer.send([0, 10, "sleep", [{"seconds": 0}]])
        assert await peer.receive() == [1, 10, None, 0]


async def test_connection_malformed_without_msgid_closes() -> None:
    """A message without a readable msgid closes the connection."""
    async with serve_raw(echo) as (peer, connection):
        await peer.send({"not": "an array"})
        with trio.fail_after(5), pytest.raises(EOFError):
            await peer.receive()
        assert connection.closed


async def test_connection_oversized_request_gets_error_then_close() -> None:
    """An oversized request is answered with its msgid, then the connection closes."""
    async with serve_raw(echo, max_message_size=1024) as (peer, connection):
        await peer.send([0, 77, "execute", [{"stdin": "x" * 5000}]])
        with trio.fail_after(5):
            reply = await peer.receive()
            assert reply == [
                1,
                77,
                {
                    "code": "invalid_request",
                    "message": "message exceeds the maximum size of 1024 bytes",
                },
                None,
            ]
            with pytest.raises(EOFError):
                await peer.receive()
        assert connection.closed


async def test_connection_oversized_notification_closes_without_reply() -> None:
    """An oversized message without a msgid closes the connection with no reply."""
    async with serve_raw(echo, max_message_size=1024) as (peer, connection):
        await peer.send([2, "job.write", [{"data": b"x" * 5000}]])
        with trio.fail_after(5), pytest.raises(EOFError):
            await peer.receive()
        assert connection.closed


async def test_connection_garbage_closes() -> None:
    """Bytes that are not msgpack close the connection without a reply."""
    async with serve_raw(echo) as (peer, _):
        await peer.stream.send_all(b"\xc1\xc1\xc1")
        with trio.fail_after(5), pytest.raises(EOFError):
            await peer.receive()


async def test_connection_notifications_from_handler() -> None:
    """peer.notify sends [2, method, [params]] before the handler's reply."""
    async with serve_raw(echo) as (peer, _):
        await peer.send([0, 1, "notify", [{"count": 2}]])
        received = [await peer.receive() for _ in range(3)]
    assert received == [
        [2, "job.output", [{"job": "j", "index": 0}]],
        [2, "job.output", [{"job": "j", "index": 1}]],
        [1, 1, None, "sent"],
    ]


async def test_connection_bounds_requests_in_flight() -> None:
    """No more than max_in_flight requests run at once; the rest wait unread."""
    running = 0
    peak = 0
    release = trio.Event()

    async def slow(method: str, params: dict[str, Any], peer: Peer) -> Any:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await release.wait()
        running -= 1
        return None

    async with serve_raw(slow, max_in_flight=2) as (peer, _):
        for msgid in range(6):
            await peer.send([0, msgid, "m", []])
        await trio.testing.wait_all_tasks_blocked()
        assert running == 2
        release.set()
        with trio.fail_after(5):
            replies = [await peer.receive() for _ in range(6)]
    assert peak == 2
    assert sorted(reply[1] for reply in replies) == list(range(6))


async def test_connection_close_cancels_peer_tasks() -> None:
    """Tasks started in peer.nursery are cancelled when the peer disconnects."""
    cancelled = trio.Event()

    async def start_background(method: str, params: dict[str, Any], peer: Peer) -> Any:
        async def background() -> None:
            try:
                await trio.sleep_forever()
            finally:
                cancelled.set()

        peer.nursery.start_soon(background)
        return "started"

    async with serve_raw(start_background) as (peer, connection):
        await peer.send([0, 1, "start", []])
        assert await peer.receive() == [1, 1, None, "started"]
        await peer.stream.aclose()
        with trio.fail_after(5):
            await cancelled.wait()
        assert connection.closed


async def test_connection_notify_after_close_is_dropped() -> None:
    """Notifying a closed peer does nothing and raises nothing."""
    peers: list[Peer] = []

    async def keep(method: str, params: dict[str, Any], peer: Peer) -> Any:
        peers.append(peer)
        return None

    async with serve_raw(keep) as (raw, connection):
        await raw.send([0, 1, "m", []])
        await raw.receive()
        await raw.stream.aclose()
        with trio.fail_after(5):
            await connection.wait_closed()
    assert peers[0].closed
    await peers[0].notify("job.done", {"job": "x"})


async def test_connection_without_dispatcher_answers_method_not_found() -> None:
    """A client-side connection answers requests from the other side with method_not_found."""
    a, b = trio.testing.memory_stream_pair()
    connection = Connection(b)
    async with trio.open_nursery() as nursery:
        await nursery.start(connection.run)
        raw = RawPeer(a)
        await raw.send([0, 3, "surprise", []])
        assert (await raw.receive())[2] == {
            "code": "method_not_found",
            "message": "method 'surprise' not found",
        }
        nursery.cancel_scope.cancel()


async def test_connection_loss_fails_pending_calls() -> None:
    """When the stream closes, every pending call raises ConnectionLost."""
    a, b = trio.testing.memory_stream_pair()
    connection = Connection(b)
    outcomes: list[BaseException] = []

    async def call() -> None:
        with pytest.raises(ConnectionLost) as info:
            await connection.call("execute", {})
        outcomes.append(info.value)

    async with trio.open_nursery() as nursery:
        await nursery.start(connection.run)
        for _ in range(3):
            nursery.start_soon(call)
        await trio.testing.wait_all_tasks_blocked()
        await a.aclose()
    assert len(outcomes) == 3
    with pytest.raises(ConnectionLost):
        await connection.call("ping", {})


async def test_connection_msgids_wrap_and_skip_pending() -> None:
    """msgids count up as uint32, wrap to 0, and skip ids still pending."""
    a, b = trio.testing.memory_stream_pair()
    connection = Connection(b)
    seen: list[int] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(connection.run)
        raw = RawPeer(a)
        connection._msgids = iter([2**32 - 1, 2**32, 2**32 + 1, 1])  # type: ignore[assignment]

        async def call() -> None:
            with trio.move_on_after(5):
                await connection.call("m", {})

        for _ in range(3):
            nursery.start_soon(call)
            seen.append((await raw.receive())[1])
        nursery.cancel_scope.cancel()
    assert seen == [2**32 - 1, 0, 1]


async def test_connection_job_not_found_maps_to_class() -> None:
    """An error reply comes back to RpcClient as the class of its code."""

    async def missing(method: str, params: dict[str, Any], peer: Peer) -> Any:
        raise JobNotFound("no job 'x' on this connection")

    async with open_memory_rpc(missing) as client:
        with pytest.raises(JobNotFound, match="no job 'x' on this connection"):
            await client.call("job.kill", {"job": "x"})


async def test_connection_closes_when_a_started_message_stalls() -> None:
    """Half a request left unfinished gets invalid_request (its msgid is known), then a close."""
    async with serve_raw(echo, frame_timeout=0.3) as (peer, connection):
        data = pack([0, 7, "sleep", [{"seconds": 0}]])
        await peer.stream.send_all(data[:-3])
        with trio.fail_after(3):
            started = trio.current_time()
            reply = await peer.receive()
            await connection.wait_closed()
    assert reply == [
        1,
        7,
        {"code": "invalid_request", "message": "a message was not completed within 0.3 s"},
        None,
    ]
    assert 0.25 < trio.current_time() - started < 2


async def test_connection_frame_deadline_is_per_message() -> None:
    """A peer that keeps completing messages, each read ending inside the next, is served."""
    async with serve_raw(echo, frame_timeout=0.3) as (peer, connection):
        messages = [pack([0, msgid, "sleep", [{"seconds": 0}]]) for msgid in range(8)]
        stream = b"".join(messages)
        step = len(messages[0])
        cuts = [0, *range(step // 2, len(stream), step), len(stream)]
        with trio.fail_after(5):
            for start, end in itertools.pairwise(cuts):
                await peer.stream.send_all(stream[start:end])
                await trio.sleep(0.2)
            replies = [await peer.receive() for _ in range(8)]
        assert not connection.closed
    assert sorted(reply[1] for reply in replies) == list(range(8))


async def test_connection_notification_buffer_is_bounded() -> None:
    """Queued notifications stop at the buffer's size: the next raises, a forced one still goes."""
    queued: list[int] = []

    async def flood(method: str, params: dict[str, Any], peer: Peer) -> Any:
        for index in range(1000):
            try:
                peer.notify_nowait("job.output", {"job": "j", "data": b"x" * 100, "i": index})
            except NotificationBufferFull:
                peer.notify_nowait("job.done", {"job": "j", "error": "full"}, force=True)
                return index
            queued.append(index)
        return None

    client, server = trio.testing.lockstep_stream_pair()
    connection = Connection(server, dispatcher=flood, notification_buffer=2000)
    async with trio.open_nursery() as nursery:
        await nursery.start(connection.run)
        raw = RawPeer(client)
        await raw.send([0, 1, "flood", []])
        received: list[Any] = []
        with trio.fail_after(5):
            while not received or received[-1][0] != 1:
                received.append(await raw.receive())
        nursery.cancel_scope.cancel()
    assert 10 <= len(queued) < 20
    assert [message[0] for message in received[:-2]] == [2] * len(queued)
    assert received[-2] == [2, "job.done", [{"job": "j", "error": "full"}]]
    assert received[-1] == [1, 1, None, len(queued)]
