"""pistond.gateway.ratelimit and admission: token buckets, their headers, 429 through the gateway.

Rules: buckets are tested on trio's autojump clock (time is exact); through a real gateway
(fake daemon) a bucket of 2 refilling one job a second shows 429, its headers and the refill;
127.0.0.x source addresses and X-Forwarded-For from a trusted proxy stand for other clients.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio
import trio_websocket

from pistond.gateway.admission import Admission
from pistond.gateway.apikeys import KeyPolicy, make_key
from pistond.gateway.caller import Caller
from pistond.gateway.errors import HttpError
from pistond.gateway.ratelimit import RateLimiter, RatePolicy

from .conftest import StackSettings, start_stack

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .conftest import GatewayStack

HELLO = {"language": "python", "version": "3.12.0", "files": [{"content": 'print("hi")'}]}


def test_ratelimit_policy_of_rate_and_burst() -> None:
    """Rate 0 is no limit; burst defaults to a minute's worth; the window refills the burst."""
    assert RatePolicy.of(0) is None
    assert RatePolicy.of(60) == RatePolicy(60, 60)
    policy = RatePolicy.of(60, 2)
    assert policy == RatePolicy(60, 2)
    assert (policy.rate, policy.window) == (1.0, 2)


async def test_ratelimit_bucket_empties_then_refills(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Burst 3 at 60/min: three pass, the fourth waits one second; a second later one passes."""
    limiter = RateLimiter()
    policy = RatePolicy(60, 3)
    decisions = [limiter.take("a", policy) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert decisions[3].retry_after == 1
    assert decisions[3].headers() == {
        "RateLimit-Limit": "3",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": "3",
        "RateLimit-Policy": "3;w=3",
        "Retry-After": "1",
    }
    await trio.sleep(1)
    again = limiter.take("a", policy)
    assert (again.allowed, again.remaining, again.reset) == (True, 0, 3)
    assert limiter.take("b", policy).allowed  # another client has its own bucket
    await trio.sleep(10)
    full = limiter.take("a", policy)
    assert (full.remaining, full.reset) == (2, 1)  # refilled to 3, never beyond


async def test_ratelimit_forgets_full_buckets(autojump_clock: trio.testing.MockClock) -> None:
    """Buckets that refilled are dropped as others are used, and the count is bounded."""
    limiter = RateLimiter(max_buckets=10)
    policy = RatePolicy(600, 5)
    for client in range(50):
        limiter.take(f"c{client}", policy)
    assert len(limiter) == 10
    await trio.sleep(5)
    for _ in range(3):
        limiter.take("fresh", policy)
    assert len(limiter) < 10


def test_admission_key_policy_replaces_the_default() -> None:
    """A key's rate wins; a key without one uses the default (with its own burst); 0 is none."""
    admission = Admission(RatePolicy(60, 60))
    own = make_key(policy=KeyPolicy(jobs_per_minute=6, burst=2)).record
    burst_only = make_key(policy=KeyPolicy(burst=5)).record
    unlimited = make_key(policy=KeyPolicy(jobs_per_minute=0)).record
    assert admission.rate_policy(Caller("1.2.3.4")) == RatePolicy(60, 60)
    assert admission.rate_policy(Caller("1.2.3.4", own)) == RatePolicy(6, 2)
    assert admission.rate_policy(Caller("1.2.3.4", burst_only)) == RatePolicy(60, 5)
    assert admission.rate_policy(Caller("1.2.3.4", unlimited)) is None
    assert Admission().rate_policy(Caller("1.2.3.4", burst_only)) is None


async def test_admission_refuses_more_jobs_than_a_bucket_holds() -> None:
    """A request of more jobs than the burst can never pass: 400, not 429."""
    admission = Admission(RatePolicy(60, 2))
    with pytest.raises(HttpError) as refused:
        admission.charge(Caller("1.2.3.4"), 3)
    assert refused.value.status == 400
    assert refused.value.message == (
        "this request starts 3 jobs, more than the 2 this client may start at once"
    )


@pytest.fixture(scope="module")
def limited() -> Iterator[GatewayStack]:
    """A gateway with a bucket of 2 refilling 1 job a second, trusting 127.0.0.9 as a proxy."""
    stack = start_stack(
        None,
        StackSettings(
            gateway={"rate_limit": 60, "rate_burst": 2, "trusted_proxies": ("127.0.0.9",)}
        ),
    )
    try:
        yield stack
    finally:
        stack.stop()


async def _post(
    url: str, source: str, body: Any = HELLO, headers: dict[str, str] | None = None
) -> httpx.Response:
    transport = httpx.AsyncHTTPTransport(local_address=source)
    async with httpx.AsyncClient(base_url=url, timeout=10, transport=transport) as client:
        return await client.post("/api/v2/execute", json=body, headers=headers)


async def test_ratelimit_429_with_headers_then_refill(limited: GatewayStack) -> None:
    """Two jobs pass with RateLimit headers; the third gets 429 JSON with Retry-After; after
    the refill one passes again."""
    with trio.fail_after(15):
        first = await _post(limited.url, "127.0.0.2")
        second = await _post(limited.url, "127.0.0.2")
        third = await _post(limited.url, "127.0.0.2")
        await trio.sleep(int(third.headers["retry-after"]) + 0.1)
        later = await _post(limited.url, "127.0.0.2")
    assert first.status_code == second.status_code == 200
    assert first.headers["ratelimit-limit"] == "2"
    assert first.headers["ratelimit-remaining"] == "1"
    assert first.headers["ratelimit-policy"] == "2;w=2"
    assert second.headers["ratelimit-remaining"] == "0"
    assert third.status_code == 429
    assert third.json() == {
        "message": "rate limit exceeded: at most 2 jobs at once and 60 per minute, try again in 1 s"
    }
    assert third.headers["retry-after"] == "1"
    assert third.headers["ratelimit-remaining"] == "0"
    assert int(third.headers["ratelimit-reset"]) in (1, 2)
    assert later.status_code == 200


async def test_ratelimit_counts_bad_requests_and_sends_headers_with_errors(
    limited: GatewayStack,
) -> None:
    """A refused body still takes its token, and its 400 carries the headers."""
    with trio.fail_after(10):
        bad = await _post(limited.url, "127.0.0.3", {"language": "python"})
    assert bad.status_code == 400
    assert bad.headers["ratelimit-remaining"] == "1"


async def test_ratelimit_trusted_proxy_forwards_the_client(limited: GatewayStack) -> None:
    """Behind the trusted proxy each forwarded client has its own bucket; an untrusted peer's
    X-Forwarded-For is ignored (it cannot pick a fresh address)."""
    with trio.fail_after(15):
        for _ in range(2):
            assert (await _post(limited.url, "127.0.0.4")).status_code == 200
        spoofed = await _post(limited.url, "127.0.0.4", headers={"X-Forwarded-For": "10.1.1.1"})
        forwarded = [
            await _post(limited.url, "127.0.0.9", headers={"X-Forwarded-For": "10.2.2.2"})
            for _ in range(3)
        ]
        other = await _post(
            limited.url, "127.0.0.9", headers={"X-Forwarded-For": "10.9.9.9, 10.3.3.3"}
        )
    assert spoofed.status_code == 429
    assert [r.status_code for r in forwarded] == [200, 200, 429]
    assert other.status_code == 200


async def test_ratelimit_websocket_handshake_takes_a_token(limited: GatewayStack) -> None:
    """WebSocket sessions share the bucket: past it the handshake gets 429 with the headers."""
    url = limited.ws_url
    with trio.fail_after(15):
        for _ in range(2):
            assert (await _post(limited.url, "127.0.0.1")).status_code == 200
        with pytest.raises(trio_websocket.ConnectionRejected) as rejected:
            async with trio_websocket.open_websocket_url(url):
                pass
    assert rejected.value.status_code == 429
    headers = {name.lower(): value for name, value in rejected.value.headers or []}
    assert headers[b"retry-after"] == b"1"
    assert headers[b"ratelimit-limit"] == b"2"
