"""RpcClient: errors mapped to classes, bounded notification subscriptions, connection loss."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing

from pistond import errors
from pistond.rpc.client import (
    NotificationOverflow,
    RemoteError,
    RpcClient,
    error_from_wire,
    sole_exception,
)
from pistond.rpc.connection import ConnectionLost
from pistond.testing import open_memory_rpc

if TYPE_CHECKING:
    from pistond.rpc.connection import Peer


async def daemon(method: str, params: dict[str, Any], peer: Peer) -> Any:
    if method == "fail":
        if params["code"] == "weird":
            raise _Weird("odd", data=[1])
        raise error_from_wire({"code": params["code"], "message": f"{params['code']} text"})
    if method == "burst":
        for index in range(params["count"]):
            await peer.notify(
                params.get("method", "job.output"), {"job": params["job"], "i": index}
            )
        return params["count"]
    return None


class _Weird(errors.PistondError):
    def to_wire(self) -> dict[str, Any]:
        return {"code": "weird", "message": self.message, "data": self.data}


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("invalid_request", errors.InvalidRequest),
        ("method_not_found", errors.MethodNotFound),
        ("invalid_params", errors.InvalidParams),
        ("runtime_unknown", errors.RuntimeUnknown),
        ("overloaded", errors.Overloaded),
        ("package_not_found", errors.PackageNotFound),
        ("package_error", errors.PackageError),
        ("job_not_found", errors.JobNotFound),
        ("forbidden", errors.Forbidden),
        ("killed", errors.JobKilled),
        ("internal", errors.InternalError),
    ],
)
async def test_client_error_codes_map_to_classes(code: str, cls: type[errors.PistondError]) -> None:
    """Each PROTOCOL.md error code is raised as its PistondError subclass with the message."""
    async with open_memory_rpc(daemon) as client:
        with pytest.raises(cls) as info:
            await client.call("fail", {"code": code})
    assert type(info.value) is cls
    assert info.value.message == f"{code} text"


async def test_client_unknown_error_code_kept() -> None:
    """An unknown code is a RemoteError that keeps the code, message and data."""
    async with open_memory_rpc(daemon) as client:
        with pytest.raises(RemoteError) as info:
            await client.call("fail", {"code": "weird"})
    assert info.value.remote_code == "weird"
    assert info.value.to_wire() == {"code": "weird", "message": "odd", "data": [1]}


async def test_client_subscription_filters_by_prefix() -> None:
    """A subscription receives only the notifications whose method has its prefix."""
    async with open_memory_rpc(daemon) as client:
        with client.subscribe("job.") as jobs, client.subscribe("packages.") as packages:
            await client.call("burst", {"job": "a", "count": 2})
            await client.call("burst", {"job": "b", "count": 1, "method": "packages.progress"})
            assert [(await jobs.receive()).params["i"] for _ in range(2)] == [0, 1]
            assert (await packages.receive()).params == {"job": "b", "i": 0}


async def test_client_subscription_retain_purges_buffer() -> None:
    """retain() keeps only matching notifications, including those already buffered."""
    async with open_memory_rpc(daemon) as client:
        with client.subscribe("job.") as subscription:
            await client.call("burst", {"job": "other", "count": 3})
            await client.call("burst", {"job": "mine", "count": 1})
            subscription.retain(lambda n: n.params["job"] == "mine")
            await client.call("burst", {"job": "other", "count": 2})
            await client.call("burst", {"job": "mine", "count": 1})
            received = [await subscription.receive() for _ in range(2)]
    assert [(n.params["job"], n.params["i"]) for n in received] == [("mine", 0), ("mine", 0)]


async def test_client_subscription_overflow_ends_stream() -> None:
    """A full buffer closes the subscription: buffered ones come first, then the overflow error."""
    async with open_memory_rpc(daemon) as client:
        with client.subscribe("job.", max_buffer=3) as subscription:
            await client.call("burst", {"job": "a", "count": 10})
            received = [(await subscription.receive()).params["i"] for _ in range(3)]
            with pytest.raises(NotificationOverflow):
                await subscription.receive()
            assert received == [0, 1, 2]
            # The connection itself is unaffected.
            assert await client.call("burst", {"job": "a", "count": 0}) == 0


async def test_client_closed_subscription_ends_iteration() -> None:
    """Closing a subscription ends its async iteration."""
    async with open_memory_rpc(daemon) as client:
        subscription = client.subscribe("job.")
        subscription.close()
        assert [n async for n in subscription] == []


async def test_client_connection_loss_fails_calls_and_subscriptions() -> None:
    """When the daemon goes away, pending calls and subscriptions raise ConnectionLost."""
    client_stream, server_stream = trio.testing.memory_stream_pair()
    async with RpcClient.from_stream(client_stream) as client:
        subscription = client.subscribe("job.")
        failures: list[BaseException] = []

        async def pending_call() -> None:
            with pytest.raises(ConnectionLost) as info:
                await client.call("execute", {})
            failures.append(info.value)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(pending_call)
            nursery.start_soon(pending_call)
            await trio.testing.wait_all_tasks_blocked()
            await server_stream.aclose()
        with pytest.raises(ConnectionLost):
            await subscription.receive()
        with pytest.raises(ConnectionLost):
            await client.call("ping")
        assert client.closed
    assert len(failures) == 2
    assert isinstance(failures[0], trio.BrokenResourceError)


async def test_client_many_concurrent_calls() -> None:
    """Hundreds of calls in flight on one connection all get their own answers."""

    async def double(method: str, params: dict[str, Any], peer: Peer) -> Any:
        await trio.sleep(0.001 * (params["n"] % 7))
        return params["n"] * 2

    results: dict[int, int] = {}
    async with open_memory_rpc(double) as client:

        async def one(n: int) -> None:
            results[n] = await client.call("double", {"n": n})

        async with trio.open_nursery() as nursery:
            for n in range(300):
                nursery.start_soon(one, n)
    assert results == {n: n * 2 for n in range(300)}


async def test_client_block_errors_come_out_unwrapped() -> None:
    """An error raised in the client's block leaves it as itself, not in an exception group."""
    with pytest.raises(errors.InvalidParams, match="invalid_params text"):
        async with open_memory_rpc(daemon) as client:
            await client.call("fail", {"code": "invalid_params"})
    with pytest.raises(KeyError):
        async with open_memory_rpc(daemon):
            raise KeyError("from the block")


async def test_client_cancellation_of_the_block_is_not_an_error() -> None:
    """A block cancelled from outside ends quietly (Cancelled is not wrapped either)."""
    with trio.move_on_after(0.05) as scope:
        async with open_memory_rpc(daemon):
            await trio.sleep_forever()
    assert scope.cancelled_caught


def test_client_sole_exception_keeps_groups_of_several() -> None:
    """Only a group holding exactly one exception is unwrapped."""
    one = ExceptionGroup("g", [ExceptionGroup("h", [ValueError("v")])])
    two = ExceptionGroup("g", [ValueError("v"), KeyError("k")])
    assert isinstance(sole_exception(one), ValueError)
    assert sole_exception(two) is two
