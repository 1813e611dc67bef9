"""Health and information routes: ``/api/v2/health`` (liveness, readiness) and ``/api/v2/info``.

- ``GET /api/v2/health/live``: 200 while the gateway answers at all (liveness: restart the
  gateway when this fails, never because the daemon is down);
- ``GET /api/v2/health/ready`` and ``GET /api/v2/health``: 200 when the daemon answers and has
  at least one runtime, and (with API keys) the keys can be read; else 503, saying which check
  failed (readiness: send no traffic here meanwhile);
- ``GET /api/v2/info``: the daemon's version and sandbox features, the configured limits and
  the gateway's public policy (keys on or off, rate limit, caps), plus the caller's own key
  policy when it presents one; never a path, a URL or a secret.

All are open (no key needed) and cheap: the daemon is asked at most once per
:data:`FACTS_TTL` seconds whatever the number of probes, and each question has a deadline.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final, TypeVar

import attrs
import trio
from starlette.responses import JSONResponse

from pistond._version import __version__
from pistond.client import PistonClient
from pistond.errors import PistondError
from pistond.gateway.apikeys import KeyStoreUnavailable, policy_fields
from pistond.gateway.caller import caller_of
from pistond.gateway.errors import DAEMON_UNAVAILABLE, DaemonUnavailable, HttpError, unavailable
from pistond.gateway.openapi import PISTON_VERSION

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from starlette.requests import Request
    from starlette.responses import Response

    from pistond.gateway.apikeys import KeyStore
    from pistond.gateway.daemon_socket import DaemonSocket
    from pistond.models import RuntimeInfo, StatusResult

logger = logging.getLogger(__name__)

T = TypeVar("T")

FACTS_TTL: Final = 1.0
"""Seconds an answer of the daemon (or its failure) is reused."""
FACTS_TIMEOUT: Final = 3.0
"""Seconds the daemon gets to answer a health question."""
NO_RUNTIMES: Final = "the execution daemon has no runtimes installed"
DAEMON_SLOW: Final = "the execution daemon did not answer in time"


@attrs.define(eq=False)
class _Cached:
    """One question to the daemon, asked at most once per :data:`FACTS_TTL` (callers that
    arrive while it is asked wait for that answer)."""

    ask: Callable[[PistonClient], Awaitable[Any]]
    lock: trio.Lock = attrs.field(factory=trio.Lock)
    stamp: float | None = None
    value: Any = None
    error: str | None = None


@attrs.define(eq=False)
class DaemonFacts:
    """The daemon's status and runtimes as the health routes (and key limits) see them."""

    daemon: DaemonSocket
    ttl: float = FACTS_TTL
    timeout: float = FACTS_TIMEOUT
    _status: _Cached = attrs.field(init=False, factory=lambda: _Cached(PistonClient.status))
    _runtimes: _Cached = attrs.field(init=False, factory=lambda: _Cached(PistonClient.runtimes))

    async def status(self) -> StatusResult:
        """The daemon's ``status``.

        Raises:
            HttpError: 503 when the daemon does not answer (in time).
        """
        result: StatusResult = await self._answer(self._status)
        return result

    async def runtimes(self) -> list[RuntimeInfo]:
        """The daemon's runtimes.

        Raises:
            HttpError: 503 when the daemon does not answer (in time).
        """
        result: list[RuntimeInfo] = await self._answer(self._runtimes)
        return result

    async def _answer(self, cached: _Cached) -> Any:
        async with cached.lock:
            now = trio.current_time()
            if cached.stamp is None or now - cached.stamp >= self.ttl:
                cached.value, cached.error = await self._ask(cached.ask)
                cached.stamp = trio.current_time()
            if cached.error is not None:
                raise unavailable(cached.error)
            return cached.value

    async def _ask(
        self, ask: Callable[[PistonClient], Awaitable[T]]
    ) -> tuple[T | None, str | None]:
        try:
            with trio.fail_after(self.timeout):
                return await self.daemon.run(ask), None
        except trio.TooSlowError:
            return None, DAEMON_SLOW
        except DaemonUnavailable:
            return None, DAEMON_UNAVAILABLE
        except PistondError as exc:
            logger.warning("daemon refused a health question: %s %s", exc.code, exc.message)
            return None, exc.message or DAEMON_UNAVAILABLE


@attrs.define(eq=False)
class HealthRoutes:
    """The handlers of the health and information routes.

    Args:
        facts: the daemon's answers, cached.
        keys: the API key store (None: keys are off), part of readiness.
        policy: the gateway's public settings, as ``/api/v2/info`` shows them.
    """

    facts: DaemonFacts
    keys: KeyStore | None = None
    policy: Mapping[str, Any] = attrs.field(factory=dict)

    async def live(self, request: Request) -> Response:
        """``GET /api/v2/health/live``: the gateway answers."""
        return JSONResponse({"status": "live"})

    async def ready(self, request: Request) -> Response:
        """``GET /api/v2/health`` and ``/api/v2/health/ready``: 200 when ready, else 503."""
        checks: dict[str, dict[str, Any]] = {}
        problems: list[str] = []
        try:
            runtimes = await self.facts.runtimes()
        except HttpError as exc:
            checks["daemon"] = {"ready": False, "message": exc.message}
            problems.append(exc.message)
        else:
            checks["daemon"] = {"ready": bool(runtimes), "runtimes": len(runtimes)}
            if not runtimes:
                checks["daemon"]["message"] = NO_RUNTIMES
                problems.append(NO_RUNTIMES)
        if self.keys is not None:
            try:
                await self.keys.check()
            except KeyStoreUnavailable as exc:
                checks["api_keys"] = {"ready": False, "message": str(exc)}
                problems.append(str(exc))
            else:
                checks["api_keys"] = {"ready": True}
        body: dict[str, Any] = {
            "status": "unready" if problems else "ready",
            "live": True,
            "ready": not problems,
        }
        if problems:
            body["message"] = "; ".join(problems)
        body["checks"] = checks
        return JSONResponse(body, status_code=503 if problems else 200)

    async def info(self, request: Request) -> Response:
        """``GET /api/v2/info``: versions, sandbox features, limits, policy; 503 without the
        daemon."""
        status = await self.facts.status()
        body: dict[str, Any] = {
            "version": status.version,
            "gateway_version": __version__,
            "piston_version": PISTON_VERSION,
            "sandbox": {
                "cgroup": status.sandbox.cgroup,
                "seccomp": status.sandbox.seccomp,
                "network": status.sandbox.network,
            },
            "limits": dict(status.limits),
            "gateway": dict(self.policy),
        }
        key = caller_of(request).key
        if key is not None:
            body["key"] = {"id": key.id, "name": key.name, **policy_fields(key.policy)}
        return JSONResponse(body)
