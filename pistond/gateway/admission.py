"""What a job request passes before it runs: its client's rate limit and its key's limits.

Every route that starts jobs (``/api/v2/execute``, ``/api/v2/connect``, the submission routes)
asks :class:`Admission` first: :meth:`~Admission.charge` takes one token per job from the
caller's bucket (its key's own rate, else ``PISTON_GATEWAY_RATE_LIMIT``) and returns the
``RateLimit-*`` headers for the answer, and :meth:`~Admission.cap` applies the key's
``max_limits`` to the request (:mod:`pistond.gateway.keylimits`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from pistond.gateway.errors import HttpError
from pistond.gateway.keylimits import cap_request
from pistond.gateway.ratelimit import RateLimiter, RatePolicy

if TYPE_CHECKING:
    from pistond.gateway.caller import Caller
    from pistond.gateway.health import DaemonFacts

RATE_LIMITED = "rate limit exceeded: at most {burst} jobs at once and {per_minute} per minute"


@attrs.define(eq=False)
class Admission:
    """Rate limits and key limits of job requests.

    Args:
        default: the bucket of callers whose key sets no rate (None: no limit).
        facts: the daemon's configured limits, for keys with ``max_limits``.
    """

    default: RatePolicy | None = None
    facts: DaemonFacts | None = None
    limiter: RateLimiter = attrs.field(factory=RateLimiter)

    def rate_policy(self, caller: Caller) -> RatePolicy | None:
        """The bucket ``caller`` draws from (None: no rate limit)."""
        key = caller.key
        if key is None:
            return self.default
        rate = key.policy.jobs_per_minute
        if rate is None:
            if self.default is None:
                return None
            return RatePolicy.of(self.default.per_minute, key.policy.burst or self.default.burst)
        return RatePolicy.of(rate, key.policy.burst)

    def charge(self, caller: Caller, jobs: int = 1) -> dict[str, str]:
        """Take ``jobs`` tokens from ``caller``'s bucket; the headers for the answer.

        Raises:
            HttpError: 429 with ``Retry-After`` and the ``RateLimit-*`` headers when the bucket
                has too few tokens; 400 when ``jobs`` is more than the bucket ever holds.
        """
        policy = self.rate_policy(caller)
        if policy is None:
            return {}
        if jobs > policy.burst:
            raise HttpError(
                400,
                f"this request starts {jobs} jobs, more than the {policy.burst} this client "
                "may start at once",
            )
        decision = self.limiter.take(caller.share, policy, jobs)
        headers = decision.headers()
        if not decision.allowed:
            text = RATE_LIMITED.format(burst=policy.burst, per_minute=policy.per_minute)
            raise HttpError(429, f"{text}, try again in {decision.retry_after} s", headers)
        return headers

    async def cap(self, caller: Caller, params: dict[str, Any]) -> dict[str, int]:
        """Apply ``caller``'s key limits to ``params``; the values filled in.

        Raises:
            HttpError: 403 for a limit asked above the key's cap.
        """
        key = caller.key
        if key is None or not key.policy.max_limits:
            return {}
        configured = None
        if self.facts is not None:
            try:
                configured = (await self.facts.status()).limits
            except HttpError:
                configured = None  # the daemon will not take the job either
        return cap_request(params, key.policy.max_limits, configured)


def with_headers(error: HttpError, headers: dict[str, str]) -> HttpError:
    """``error`` with ``headers`` added (its own win)."""
    if not headers:
        return error
    return HttpError(error.status, error.message, {**headers, **error.headers})
