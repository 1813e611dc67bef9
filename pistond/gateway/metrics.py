"""Prometheus metrics of the gateway: requests by route and code, latency, jobs by status."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final

import attrs
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from collections.abc import Iterable

    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from pistond.models import CompileCacheStats

SUBMISSION_ROUTE: Final = "/api/v2/submissions/{token}"
"""The label of one submission's route (its path holds the token, which is never a label)."""
ROUTES: Final = frozenset(
    {
        "/",
        "/api/v2/runtimes",
        "/api/v2/execute",
        "/api/v2/packages",
        "/api/v2/connect",
        "/api/v2/openapi.json",
        "/metrics",
        "/status",
        "/playground",
        "/api/v2/health",
        "/api/v2/health/live",
        "/api/v2/health/ready",
        "/api/v2/info",
        "/api/v2/submissions",
        "/api/v2/submissions/batch",
        SUBMISSION_ROUTE,
    }
)
"""Route labels; every other path is counted as ``other`` to bound the label set."""
METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Method labels; any other method is counted as ``other``."""


def route_label(path: str) -> str:
    """The metrics label of a request path (trailing slash ignored)."""
    if path != "/":
        path = path.rstrip("/")
    if path.startswith("/api/v2/submissions/") and path != "/api/v2/submissions/batch":
        return SUBMISSION_ROUTE if path.count("/") == 4 else "other"
    return path if path in ROUTES else "other"


@attrs.define(eq=False)
class GatewayMetrics:
    """The gateway's collectors, in a registry of their own."""

    registry: CollectorRegistry = attrs.field(factory=lambda: CollectorRegistry(auto_describe=True))
    requests: Counter = attrs.field(init=False)
    latency: Histogram = attrs.field(init=False)
    jobs: Counter = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.requests = Counter(
            "pistond_gateway_requests",
            "HTTP requests and WebSocket sessions by route, method and status code.",
            ["route", "method", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "pistond_gateway_request_duration_seconds",
            "Time to answer an HTTP request (WebSocket: session length), by route.",
            ["route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.jobs = Counter(
            "pistond_gateway_jobs",
            "Jobs by how their last stage ended: ok, a status (RE, SG, TO, ...) or rejected.",
            ["status"],
            registry=self.registry,
        )

    def job_finished(self, status: str | None) -> None:
        """Count a job whose last stage ended with ``status`` (None: exited 0)."""
        self.jobs.labels(status=status or "ok").inc()


@attrs.define(eq=False)
class MetricsMiddleware:
    """ASGI middleware counting every HTTP request and WebSocket session."""

    app: ASGIApp
    metrics: GatewayMetrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on and record its route, method, status code and duration."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        code = "500"

        async def sending(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = str(message["status"])
            elif message["type"] == "websocket.close":
                code = str(message.get("code", 1000))
            elif message["type"] == "websocket.accept" and code == "500":
                code = "101"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = route_label(scope["path"])
            method = scope.get("method", "GET") if scope["type"] == "http" else "WS"
            if method not in METHODS and method != "WS":
                method = "other"
            self.metrics.requests.labels(route=route, method=method, code=code).inc()
            self.metrics.latency.labels(route=route).observe(time.monotonic() - started)


_CACHE_COUNTERS: Final = (
    ("hits", "Compile stages served from the daemon's compile cache."),
    ("misses", "Compile stages run that the compile cache could have served."),
    ("stores", "Compile cache entries written."),
    ("evictions", "Compile cache entries evicted to keep its size bound."),
    ("corrupt", "Compile cache entries dropped because their hash check failed."),
)
_CACHE_GAUGES: Final = (
    ("bytes", "Bytes the compile cache's entries take."),
    ("entries", "Entries in the compile cache."),
    ("max_bytes", "The compile cache's size bound (PISTON_COMPILE_CACHE_SIZE)."),
    ("enabled", "1 when the daemon's compile cache is on."),
)


@attrs.frozen(eq=False)
class _Families:
    """A collector that yields metric families read once (the daemon's status)."""

    families: tuple[Metric, ...]

    def collect(self) -> Iterable[Metric]:
        return self.families


def compile_cache_metrics(stats: CompileCacheStats | None) -> bytes:
    """The daemon's compile cache counters (``status.compile_cache``) in Prometheus' text
    format, as ``pistond_compile_cache_*``; nothing for a daemon without them."""
    if stats is None:
        return b""
    families: list[Metric] = [
        CounterMetricFamily(f"pistond_compile_cache_{name}", text, value=getattr(stats, name))
        for name, text in _CACHE_COUNTERS
    ]
    families += [
        GaugeMetricFamily(f"pistond_compile_cache_{name}", text, value=int(getattr(stats, name)))
        for name, text in _CACHE_GAUGES
    ]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(tuple(families)))
    return generate_latest(registry)
