"""pistond.submissions.delivery: one POST, to a checked address only, verdict by answer."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio

from pistond.submissions.addresses import CallbackPolicy, parse_callback_url
from pistond.submissions.delivery import USER_AGENT, Verdict, deliver

from .receiver import open_receiver

LOOPBACK = CallbackPolicy.from_entries(["127.0.0.0/8"])


async def test_delivery_posts_json_to_the_receiver() -> None:
    """A 2xx answer delivers; the receiver gets a POST of the JSON, our user agent, its path."""
    async with open_receiver() as receiver:
        target = parse_callback_url(receiver.url + "/hook?secret=1")
        delivery = await deliver(target, b'{"token": "t"}', policy=LOOPBACK)
        (got,) = receiver.received
    assert (delivery.verdict, delivery.detail) == (Verdict.DELIVERED, "HTTP 200")
    assert (got.method, got.target) == ("POST", "/hook?secret=1")
    assert got.json() == {"token": "t"}
    assert got.headers["content-type"] == "application/json"
    assert got.headers["user-agent"] == USER_AGENT
    assert got.headers["host"] == f"127.0.0.1:{receiver.port}"


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (204, Verdict.DELIVERED),
        (500, Verdict.RETRY),
        (503, Verdict.RETRY),
        (429, Verdict.RETRY),
        (408, Verdict.RETRY),
        (404, Verdict.FAILED),
        (400, Verdict.FAILED),
        (302, Verdict.FAILED),
    ],
)
async def test_delivery_verdict_by_status(status: int, verdict: Verdict) -> None:
    """Server errors and 408/425/429 are worth a retry; other 4xx and redirects are not (a
    redirect is never followed)."""
    async with open_receiver(statuses=[status]) as receiver:
        delivery = await deliver(parse_callback_url(receiver.url), b"{}", policy=LOOPBACK)
        assert len(receiver.received) == 1
    assert delivery.verdict is verdict
    assert delivery.detail.startswith(f"HTTP {status}")


async def test_delivery_refused_address_sends_nothing() -> None:
    """A receiver on an address the policy does not allow is never connected to."""
    async with open_receiver() as receiver:
        delivery = await deliver(parse_callback_url(receiver.url), b"{}", policy=CallbackPolicy())
        assert receiver.connections == 0
    assert delivery.verdict is Verdict.REFUSED


async def test_delivery_connects_to_the_checked_address_once_resolved() -> None:
    """The name is resolved once per attempt, checked, and that address is connected to: a
    resolver that would answer a forbidden address the second time (DNS rebinding) is never
    asked again; the request still names the host."""
    answers = [["127.0.0.1"], ["10.0.0.1"]]
    asked: list[str] = []

    async def rebinding(host: str, port: int) -> Sequence[str]:
        asked.append(host)
        return answers[min(len(asked), 2) - 1]

    policy = CallbackPolicy.from_entries(["127.0.0.0/8"], resolver=rebinding)
    async with open_receiver() as receiver:
        target = parse_callback_url(f"http://hooks.test:{receiver.port}/x")
        delivery = await deliver(target, b"{}", policy=policy)
        (got,) = receiver.received
    assert delivery.verdict is Verdict.DELIVERED
    assert asked == ["hooks.test"]
    assert got.headers["host"] == f"hooks.test:{receiver.port}"
    second = await deliver(target, b"{}", policy=policy)
    assert second.verdict is Verdict.REFUSED
    assert asked == ["hooks.test", "hooks.test"]


async def test_delivery_connection_refused_is_retried() -> None:
    """Nothing listening: a retry verdict, not an error."""
    async with open_receiver() as receiver:
        port = receiver.port
    delivery = await deliver(
        parse_callback_url(f"http://127.0.0.1:{port}/"), b"{}", policy=LOOPBACK
    )
    assert (delivery.verdict, delivery.detail) == (Verdict.RETRY, "connection failed")


async def test_delivery_is_bounded_by_the_callers_deadline() -> None:
    """A receiver that does not answer is left when the caller's scope ends."""
    async with open_receiver(delay=30) as receiver:
        with trio.move_on_after(0.5) as scope:
            await deliver(parse_callback_url(receiver.url), b"{}", policy=LOOPBACK)
    assert scope.cancelled_caught
