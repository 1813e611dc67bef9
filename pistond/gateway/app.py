"""The gateway's ASGI app: ``/``, ``/api/v2/runtimes``, ``/api/v2/execute``, ``/api/v2/packages``.

``/`` answers Piston's JSON banner unless the client prefers HTML, which gets the playground page
(``pistond.gateway.playground``, also at ``/playground``); ``/status`` is the daemon's status;
``/api/v2/health`` and ``/api/v2/info`` are :mod:`pistond.gateway.health`'s.

Around the routes, outermost first: metrics, the audit log (:mod:`~pistond.gateway.audit`),
CORS (:mod:`~pistond.gateway.cors`), then API keys and the caller's address
(:mod:`~pistond.gateway.auth`); job routes ask :mod:`~pistond.gateway.admission` for their rate
limit and key limits.

Every answer is JSON, errors included (``{"message": ...}``, never a stack trace). Routes answer
with and without a trailing slash (D15). Bodies are parsed as JSON whatever their Content-Type;
415 is only for a body that is not JSON (D14). The app runs on trio (hypercorn's trio worker).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, Final, NoReturn, TypeVar

import attrs
import trio
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from pistond.client import PistonClient
from pistond.convert import converter
from pistond.errors import PistondError
from pistond.gateway import v2
from pistond.gateway.admission import Admission, with_headers
from pistond.gateway.audit import AuditMiddleware, audit_record
from pistond.gateway.auth import AccessMiddleware, Authenticator
from pistond.gateway.caller import caller_of
from pistond.gateway.connect import ConnectHandler
from pistond.gateway.cors import CorsMiddleware
from pistond.gateway.daemon_socket import DaemonSocket
from pistond.gateway.errors import (
    INTERNAL,
    DaemonUnavailable,
    HttpError,
    from_rpc_error,
    unavailable,
)
from pistond.gateway.fairness import RETRY_AFTER_SECONDS, Full, Places, jobs_cap
from pistond.gateway.health import DaemonFacts, HealthRoutes
from pistond.gateway.keylimits import relaxed
from pistond.gateway.metrics import GatewayMetrics, MetricsMiddleware, compile_cache_metrics
from pistond.gateway.openapi import PISTON_VERSION, openapi_document
from pistond.gateway.playground.page import Playground
from pistond.gateway.proxies import TrustedProxies
from pistond.gateway.ratelimit import RatePolicy
from pistond.semver import max_satisfying
from pistond.submissions.routes import SubmissionRoutes

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    from starlette.requests import Request
    from starlette.routing import BaseRoute
    from starlette.types import ASGIApp

    from pistond.gateway.apikeys import KeyStore
    from pistond.models import JobResult
    from pistond.submissions.service import SubmissionService

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_MAX_BODY_SIZE: Final = 1024 * 1024
JSON_CONTENT_TYPE: Final = "application/json"
_STATUS_TEXT: Final = {404: "Not Found", 405: "Method Not Allowed"}
COMPILE_CACHE_HEADER: Final = "Pistond-Compile-Cache"
"""Says whether an execute answer's compile stage came from the daemon's compile cache."""
METRICS_STATUS_TIMEOUT: Final = 2.0
"""Seconds /metrics waits for the daemon's status."""


@attrs.frozen
class GatewaySettings:
    """What the gateway needs to know, from the configuration and its own variables."""

    socket: Path
    """The daemon's RPC socket."""
    max_body_size: int = DEFAULT_MAX_BODY_SIZE
    """Largest request body, in bytes; larger bodies get 413."""
    init_timeout: float = 1.0
    """Seconds a WebSocket client has to send an accepted ``init`` frame."""
    max_websockets: int = 256
    """WebSocket sessions open at once; more get 503. 0: no cap."""
    max_jobs_per_client: int = 16
    """Jobs (executes and WebSocket sessions) one client may have at once; more get 429. 0: none."""
    rate_limit: int = 0
    """Jobs per minute one client may start (its key may say otherwise); 0: no rate limit."""
    rate_burst: int = 0
    """Jobs a client may start at once; 0: a minute's worth."""
    trusted_proxies: tuple[str, ...] = ()
    """Proxies whose ``X-Forwarded-For`` names the client."""
    cors_origins: tuple[str, ...] = ()
    """Origins browsers may call the API from."""
    audit_log: bool = True
    """Write one audit line per request."""


def compile_cache_header(result: JobResult) -> dict[str, str]:
    """``Pistond-Compile-Cache: hit`` (or ``miss``) for an answer with a compile stage: Piston's
    JSON has no place for it."""
    if result.compile is None:
        return {}
    return {COMPILE_CACHE_HEADER: "hit" if result.compile.cached else "miss"}


def message(status: int, text: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """A ``{"message": text}`` answer."""
    return JSONResponse({"message": text}, status_code=status, headers=headers)


class _NotJson(Exception):
    """The body is not JSON and was not declared as JSON: 415."""


async def read_body(request: Request, limit: int) -> bytes:
    """The whole request body (chunked or not), at most ``limit`` bytes.

    Raises:
        HttpError: 413 when the body is larger than ``limit``; 499 when the client left (or
            its connection was ended for a late body) before it was complete.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise HttpError(413, "request body too large")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HttpError(413, "request body too large")
            chunks.append(chunk)
    except ClientDisconnect:
        raise HttpError(499, "client closed request") from None
    return b"".join(chunks)


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def parse_json(body: bytes, content_type: str) -> object:
    """Parse a request body as JSON, as Piston's clients send it.

    Raises:
        HttpError: 400 ``invalid JSON body`` for a body declared as JSON that does not parse;
            415 for an undeclared body that is not JSON.
    """
    declared = content_type.strip().lower().startswith(JSON_CONTENT_TYPE)
    if not body.strip():
        if declared:
            return {}
        raise HttpError(415, "requests must be of type application/json")
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        if declared:
            raise HttpError(400, "invalid JSON body") from None
        raise HttpError(415, "requests must be of type application/json") from None


def refused(full: Full) -> HttpError:
    """The HTTP answer of a cap: 503 or 429, with ``Retry-After``."""
    return HttpError(full.status, full.message, {"Retry-After": str(RETRY_AFTER_SECONDS)})


@attrs.define(eq=False)
class Gateway:
    """The request handlers, bound to a daemon and the metrics."""

    settings: GatewaySettings
    daemon: DaemonSocket
    metrics: GatewayMetrics
    jobs: Places
    """Jobs in progress, per client (executes and WebSocket sessions)."""
    admission: Admission = attrs.field(factory=Admission)
    """Rate limits and key limits of job requests."""
    submissions: bool = False
    """Whether the submission routes are served (and described in the OpenAPI document)."""

    async def json_body(self, request: Request) -> object:
        """The request's JSON body (see :func:`parse_json`)."""
        body = await read_body(request, self.settings.max_body_size)
        return parse_json(body, request.headers.get("content-type", ""))

    async def call(
        self,
        request: Request,
        method: str,
        call: Callable[[PistonClient], Awaitable[T]],
        *,
        package: tuple[str, str] | None = None,
    ) -> T:
        """``await call(client)`` on the daemon; cancelled (with its job) if the client leaves.

        Args:
            request: the HTTP request the call serves.
            method: the RPC method ``call`` makes, for log lines and Piston's package texts.
            call: what to do with the typed client.
            package: language and version of a package request.

        Raises:
            HttpError: the daemon's error reply or unavailability, as an HTTP answer.
        """
        results: list[T] = []
        error: HttpError | None = None
        answered = False
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_cancel_on_disconnect, request, nursery.cancel_scope)
            try:
                results.append(await self.daemon.run(call))
            except DaemonUnavailable:
                error = unavailable()
            except PistondError as exc:
                logger.info("daemon refused %s: %s %s", method, exc.code, exc.message)
                error = from_rpc_error(
                    exc, package=package, uninstall=method == "packages.uninstall"
                )
            answered = True
            nursery.cancel_scope.cancel()
        if not answered:
            logger.info("client went away during %s; the call was cancelled", method)
            error = HttpError(499, "client closed request")
        if error is not None:
            raise error
        return results[0]

    async def version(self, request: Request) -> Response:
        """``GET /``: Piston's version banner."""
        return message(200, f"Piston v{PISTON_VERSION}")

    async def runtimes(self, request: Request) -> Response:
        """``GET /api/v2/runtimes``."""
        listed = await self.call(request, "runtimes", PistonClient.runtimes)
        return JSONResponse(v2.runtimes(listed))

    async def execute(self, request: Request) -> Response:
        """``POST /api/v2/execute``."""
        caller = caller_of(request)
        audit = audit_record(request)
        rate: dict[str, str] = {}
        try:
            rate = self.admission.charge(caller)
            params = v2.execute_params(await self.json_body(request))
            audit.describe()
            filled = await self.admission.cap(caller, params)
            try:
                self.jobs.take(caller.share, jobs_cap(request))
            except Full as full:
                raise refused(full) from None
            try:
                result = await self._execute(request, params, filled)
            finally:
                self.jobs.give_back(caller.share)
        except HttpError as exc:
            if exc.status < 500:
                self.metrics.job_finished("rejected")
            raise with_headers(exc, rate) from None
        audit.result(result)
        answer = v2.job_result(result)
        self.metrics.job_finished(answer["run"]["status"] if "run" in answer else None)
        return JSONResponse(answer, headers={**rate, **compile_cache_header(result)})

    async def _execute(
        self, request: Request, params: dict[str, Any], filled: dict[str, int]
    ) -> JobResult:
        """The daemon's ``execute``, sent again with a key's filled-in limit lowered to a
        runtime's own when the daemon refused it (:func:`~pistond.gateway.keylimits.relaxed`)."""
        while True:
            try:
                return await self.call(
                    request, "execute", lambda daemon: daemon.execute_request(params)
                )
            except HttpError as exc:
                if exc.status != 400 or not relaxed(params, filled, exc.message):
                    raise

    async def packages(self, request: Request) -> Response:
        """``GET``, ``POST`` and ``DELETE /api/v2/packages``."""
        if request.method == "GET":
            listed = await self.call(request, "packages", PistonClient.packages)
            return JSONResponse(v2.packages(listed))
        language, version = v2.package_params(await self.json_body(request))
        install = request.method == "POST"
        method = "packages.install" if install else "packages.uninstall"
        try:
            if install:
                done = await self.call(
                    request,
                    method,
                    lambda daemon: daemon.install_package(language, version),
                    package=(language, version),
                )
            else:
                done = await self.call(
                    request,
                    method,
                    lambda daemon: daemon.uninstall_package(language, version),
                    package=(language, version),
                )
        except HttpError as exc:
            nowhere = (
                exc.status == 404
                and not install
                and not await self._package_exists(request, language, version)
            )
            if nowhere:
                text = f"Requested package {language}-{version} does not exist"
                raise HttpError(404, text) from None
            raise
        return JSONResponse(v2.package_result(done))

    async def _package_exists(self, request: Request, language: str, version: str) -> bool:
        """Whether any local recipe or index entry is package ``language`` within ``version``.

        Decides Piston's text for a removal that matched nothing installed: ``... is not
        installed`` for a package that exists, ``Requested package ... does not exist`` for one
        that exists nowhere. When the list cannot be read, the package is taken to exist.
        """
        try:
            listed = await self.call(request, "packages", PistonClient.packages)
        except HttpError:
            return True
        versions = [item.version for item in listed if item.language == language]
        return max_satisfying(versions, version) is not None

    async def status(self, request: Request) -> Response:
        """``GET /status``: the daemon's ``status`` (jobs, sandbox features, limits), read-only."""
        status = await self.call(request, "status", PistonClient.status)
        return JSONResponse(converter.unstructure(status))

    async def openapi(self, request: Request) -> Response:
        """``GET /api/v2/openapi.json``."""
        return JSONResponse(openapi_document(submissions=self.submissions))

    async def prometheus(self, request: Request) -> Response:
        """``GET /metrics`` in Prometheus' text format: the gateway's collectors, then the
        daemon's compile cache counters (from its ``status``; left out when it is down)."""
        text = generate_latest(self.metrics.registry)
        try:
            with trio.fail_after(METRICS_STATUS_TIMEOUT):
                status = await self.daemon.run(PistonClient.status)
            text += compile_cache_metrics(status.compile_cache)
        except (DaemonUnavailable, PistondError, trio.TooSlowError):
            logger.debug("daemon status unavailable for /metrics")
        return Response(text, media_type=CONTENT_TYPE_LATEST.split(";")[0])


async def _cancel_on_disconnect(request: Request, scope: trio.CancelScope) -> None:
    """Cancel ``scope`` when the HTTP client disconnects (the body has been read already)."""
    while True:
        received = await request.receive()
        if received["type"] == "http.disconnect":
            scope.cancel()
            return


def _handled(
    endpoint: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        try:
            return await endpoint(request)
        except HttpError as exc:
            return message(exc.status, exc.message, dict(exc.headers))

    return handle


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    text = _STATUS_TEXT.get(exc.status_code, exc.detail)
    return message(exc.status_code, text, dict(exc.headers or {}))


async def _server_error(request: Request, exc: Exception) -> Response:
    logger.error("unhandled error answering %s %s", request.method, request.url.path, exc_info=exc)
    return message(500, INTERNAL)


def _both(path: str) -> list[str]:
    return [path, path + "/"]


def public_policy(settings: GatewaySettings, *, keys: bool, submissions: bool) -> dict[str, Any]:
    """What ``/api/v2/info`` says of the gateway's own settings (nothing private)."""
    rate = RatePolicy.of(settings.rate_limit, settings.rate_burst)
    return {
        "api_keys": keys,
        "rate_limit": None
        if rate is None
        else {"jobs_per_minute": rate.per_minute, "burst": rate.burst},
        "max_jobs_per_client": settings.max_jobs_per_client,
        "max_websockets": settings.max_websockets,
        "max_body_size": settings.max_body_size,
        "cors": bool(settings.cors_origins),
        "submissions": submissions,
    }


def create_app(
    settings: GatewaySettings,
    metrics: GatewayMetrics | None = None,
    playground: Playground | None = None,
    submissions: SubmissionService | None = None,
    keys: KeyStore | None = None,
) -> MetricsMiddleware:
    """Build the gateway's ASGI app.

    Args:
        settings: the daemon socket, body limit, WebSocket init timeout, rate limit, proxies,
            CORS origins.
        metrics: collectors to record into; a fresh registry by default.
        playground: the playground's files; the installed ones by default.
        submissions: the submission service whose routes to serve under
            ``/api/v2/submissions``; none by default.
        keys: the API keys every route but the open ones requires; None: keys are off.

    Returns:
        The ASGI application: Starlette behind access, CORS, audit and metrics middleware.
    """
    metrics = metrics or GatewayMetrics()
    daemon = DaemonSocket(settings.socket)
    facts = DaemonFacts(daemon)
    admission = Admission(RatePolicy.of(settings.rate_limit, settings.rate_burst), facts)
    jobs = Places("jobs", per_client=settings.max_jobs_per_client)
    gateway = Gateway(
        settings, daemon, metrics, jobs, admission, submissions=submissions is not None
    )
    connect = ConnectHandler(
        gateway.daemon,
        metrics,
        init_timeout=settings.init_timeout,
        jobs=jobs,
        sessions=Places("WebSocket sessions", total=settings.max_websockets),
        admission=admission,
    )
    health = HealthRoutes(
        facts,
        keys,
        public_policy(settings, keys=keys is not None, submissions=submissions is not None),
    )
    playground = playground or Playground()
    routes: list[BaseRoute] = [
        Route("/", _handled(playground.negotiate(gateway.version)), methods=["GET"]),
        Route("/metrics", _handled(gateway.prometheus), methods=["GET"]),
        *playground.routes(),
    ]
    http_routes = (
        ("/status", gateway.status, ["GET"]),
        ("/api/v2/runtimes", gateway.runtimes, ["GET"]),
        ("/api/v2/execute", gateway.execute, ["POST"]),
        ("/api/v2/packages", gateway.packages, ["GET", "POST", "DELETE"]),
        ("/api/v2/openapi.json", gateway.openapi, ["GET"]),
        ("/api/v2/health", health.ready, ["GET"]),
        ("/api/v2/health/ready", health.ready, ["GET"]),
        ("/api/v2/health/live", health.live, ["GET"]),
        ("/api/v2/info", health.info, ["GET"]),
    )
    for base, endpoint, methods in http_routes:
        for path in _both(base):
            routes.append(Route(path, _handled(endpoint), methods=methods))
    for path in _both("/api/v2/connect"):
        routes.append(WebSocketRoute(path, connect.session))
    if submissions is not None:
        routes += SubmissionRoutes(
            submissions, gateway.daemon, gateway.json_body, admission
        ).routes(_handled)
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_exception, Exception: _server_error},
    )
    app.router.redirect_slashes = False
    proxies = TrustedProxies.from_entries(settings.trusted_proxies)
    served: ASGIApp = AccessMiddleware(app, Authenticator(keys), proxies)
    served = CorsMiddleware(served, settings.cors_origins, proxies)
    if settings.audit_log:
        served = AuditMiddleware(served, proxies)
    return MetricsMiddleware(served, metrics)
