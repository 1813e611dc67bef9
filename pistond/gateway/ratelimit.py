"""Rate limits: a token bucket per client (an API key, or an address), with standard headers.

Each job a client starts (an execute, a WebSocket session, a submission) takes a token from its
bucket; the bucket holds ``burst`` tokens and refills at ``per_minute / 60`` tokens a second.
Answers to job requests carry the headers of draft-ietf-httpapi-ratelimit-headers (the
``RateLimit-Limit`` / ``-Remaining`` / ``-Reset`` form clients already parse):

- ``RateLimit-Limit``: the bucket's size;
- ``RateLimit-Remaining``: whole tokens left after this request;
- ``RateLimit-Reset``: seconds until the bucket is full again;
- ``RateLimit-Policy``: ``<burst>;w=<seconds>``, the window in which ``burst`` jobs refill.

A refused request gets 429 ``{"message"}`` with the same headers and ``Retry-After``: the
seconds until enough tokens are back. Buckets live in memory, per gateway process (behind a
balancer each gateway counts its own share); full buckets are forgotten, and at most
:data:`MAX_BUCKETS` are kept (the least recently used go first, which can only be generous).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Final

import attrs
import trio

MAX_BUCKETS: Final = 100_000
"""Buckets kept at once; beyond, the least recently used is dropped (as if full)."""
SWEEP: Final = 4
"""Least recently used buckets looked at per request, to forget the full ones."""


@attrs.frozen
class RatePolicy:
    """A bucket's shape: ``per_minute`` jobs refill each minute, ``burst`` at most at once."""

    per_minute: int
    burst: int

    @classmethod
    def of(cls, per_minute: int, burst: int | None = None) -> RatePolicy | None:
        """The policy of a rate and a burst (None or 0: a minute's worth); None for rate 0."""
        if per_minute <= 0:
            return None
        return cls(per_minute, burst or per_minute)

    @property
    def rate(self) -> float:
        """Tokens per second."""
        return self.per_minute / 60

    @property
    def window(self) -> int:
        """Seconds an empty bucket takes to fill."""
        return math.ceil(self.burst / self.rate)


@attrs.frozen
class Decision:
    """What a bucket said about one request."""

    allowed: bool
    policy: RatePolicy
    remaining: int
    """Whole tokens left."""
    reset: int
    """Seconds until the bucket is full."""
    retry_after: int = 0
    """Seconds until the request could pass (refused requests only)."""

    def headers(self) -> dict[str, str]:
        """The ``RateLimit-*`` headers, and ``Retry-After`` when refused."""
        headers = {
            "RateLimit-Limit": str(self.policy.burst),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset),
            "RateLimit-Policy": f"{self.policy.burst};w={self.policy.window}",
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers


@attrs.define
class _Bucket:
    tokens: float
    stamp: float


@attrs.define(eq=False)
class RateLimiter:
    """Token buckets by client name, on trio's clock."""

    max_buckets: int = MAX_BUCKETS
    _buckets: OrderedDict[tuple[str, RatePolicy], _Bucket] = attrs.field(factory=OrderedDict)

    def take(self, client: str, policy: RatePolicy, cost: int = 1) -> Decision:
        """Take ``cost`` tokens from ``client``'s bucket, or none when it has too few.

        A cost larger than ``policy.burst`` can never pass: callers refuse it before.
        """
        now = trio.current_time()
        name = (client, policy)
        bucket = self._buckets.get(name)
        if bucket is None:
            bucket = _Bucket(float(policy.burst), now)
            self._buckets[name] = bucket
        else:
            bucket.tokens = min(policy.burst, bucket.tokens + (now - bucket.stamp) * policy.rate)
            bucket.stamp = now
        self._buckets.move_to_end(name)
        allowed = bucket.tokens >= cost
        if allowed:
            bucket.tokens -= cost
        retry_after = 0 if allowed else math.ceil((cost - bucket.tokens) / policy.rate)
        decision = Decision(
            allowed=allowed,
            policy=policy,
            remaining=math.floor(bucket.tokens),
            reset=math.ceil((policy.burst - bucket.tokens) / policy.rate),
            retry_after=max(1, retry_after) if not allowed else 0,
        )
        self._forget_full(now)
        return decision

    def _forget_full(self, now: float) -> None:
        """Drop the least recently used buckets that have refilled (a few per call), and any
        beyond :attr:`max_buckets`."""
        for _ in range(SWEEP):
            if not self._buckets:
                break
            (client, policy), bucket = next(iter(self._buckets.items()))
            if bucket.tokens + (now - bucket.stamp) * policy.rate < policy.burst:
                break
            del self._buckets[client, policy]
        while len(self._buckets) > self.max_buckets:
            self._buckets.popitem(last=False)

    def __len__(self) -> int:
        return len(self._buckets)
