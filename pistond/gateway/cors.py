"""CORS: which web origins may call the API from a browser, for HTTP and WebSocket alike.

``PISTON_GATEWAY_CORS_ORIGINS`` lists the origins (``https://editor.example.com``; ``*`` for
any; ``null`` for sandboxed frames and files); by default there are none, and only pages the
gateway serves itself (the playground: same origin) use the API from a browser. Starlette's
``CORSMiddleware`` does the header work; around it:

- a preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) is answered
  204 with the ``Access-Control-Allow-*`` headers when origin, method and headers are allowed,
  and 403 ``{"message"}`` without them when not;
- a request that changes something (any method but GET, HEAD, OPTIONS) from a browser on
  another origin that is not allowed gets 403 ``{"message"}`` before anything runs: a CORS
  refusal only stops the page from reading the answer, and an execute needs no preflight
  when it is sent as ``text/plain`` (which the gateway accepts, D14);
- a WebSocket handshake with an ``Origin`` that is neither allowed nor the gateway's own is
  refused with 403 (browsers send ``Origin``; other clients usually send none, and pass).

"The gateway's own" origin is the one whose host and port are the request's ``Host`` (or
``X-Forwarded-Host`` from a trusted proxy). Answers carry ``Access-Control-Expose-Headers`` for
the rate-limit headers, ``Retry-After``, ``Location`` and ``WWW-Authenticate``. No credentials
(cookies) are involved: keys travel in ``Authorization``, which preflights allow.
"""

from __future__ import annotations

import urllib.parse
from typing import TYPE_CHECKING, Final

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, Response

from pistond.gateway.auth import deny_websocket
from pistond.gateway.proxies import TrustedProxies, parse_address

if TYPE_CHECKING:
    from collections.abc import Iterable

    from starlette.types import ASGIApp, Receive, Scope, Send

ALLOWED_METHODS: Final = ("GET", "HEAD", "POST", "DELETE", "OPTIONS")
ALLOWED_HEADERS: Final = ("Authorization", "Content-Type", "Accept")
EXPOSED_HEADERS: Final = (
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "RateLimit-Policy",
    "Retry-After",
    "Location",
    "WWW-Authenticate",
    "Pistond-Compile-Cache",
)
MAX_AGE: Final = 600
"""Seconds a browser may reuse a preflight's answer."""
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


def normalise_origin(origin: str) -> str:
    """An origin as browsers serialise it: lower case, no default port, no trailing slash."""
    origin = origin.strip().rstrip("/")
    if origin in ("*", "null"):
        return origin
    parts = urllib.parse.urlsplit(origin.lower())
    try:
        port = parts.port
    except ValueError:
        return origin.lower()
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS.get(parts.scheme):
        return f"{parts.scheme}://{host}:{port}"
    return f"{parts.scheme}://{host}"


def _host_port(netloc: str, scheme: str | None) -> tuple[str, int | None]:
    parts = urllib.parse.urlsplit(f"//{netloc.strip().lower()}")
    try:
        port = parts.port
    except ValueError:
        return netloc.lower(), None
    if port is None and scheme is not None:
        port = _DEFAULT_PORTS.get(scheme)
    return parts.hostname or "", port


class CorsMiddleware(CORSMiddleware):
    """Starlette's CORS middleware with JSON refusals, origin checks for changes and
    WebSockets, and the gateway's methods and headers.

    Args:
        app: the ASGI app behind.
        origins: the allowed origins (normalised here).
        proxies: whose ``X-Forwarded-Host`` names the gateway's own origin.
    """

    def __init__(
        self,
        app: ASGIApp,
        origins: Iterable[str] = (),
        proxies: TrustedProxies | None = None,
    ) -> None:
        allowed = tuple(normalise_origin(origin) for origin in origins)
        super().__init__(
            app,
            allow_origins=allowed,
            allow_methods=ALLOWED_METHODS,
            allow_headers=ALLOWED_HEADERS,
            expose_headers=EXPOSED_HEADERS,
            max_age=MAX_AGE,
        )
        self.proxies = proxies or TrustedProxies()

    def is_allowed_origin(self, origin: str) -> bool:
        """Whether ``origin`` is one of the configured ones (``*``: any)."""
        return super().is_allowed_origin(normalise_origin(origin))

    def is_own_origin(self, origin: str, scope: Scope) -> bool:
        """Whether ``origin`` is the gateway's own (the host the request was sent to)."""
        headers = Headers(scope=scope)
        host = headers.get("host")
        peer = scope.get("client")
        address = None if peer is None else parse_address(str(peer[0]))
        if address is not None and self.proxies.trusts(address):
            host = headers.get("x-forwarded-host", host)
        if host is None or origin == "null":
            return False
        parts = urllib.parse.urlsplit(origin.strip().lower())
        if parts.scheme not in _DEFAULT_PORTS:
            return False
        try:
            origin_port = parts.port or _DEFAULT_PORTS[parts.scheme]
        except ValueError:
            return False
        wanted_host, wanted_port = _host_port(host.split(",")[0], parts.scheme)
        return (parts.hostname, origin_port) == (wanted_host, wanted_port)

    def origin_refused(self, origin: str | None, scope: Scope) -> bool:
        """Whether a browser on ``origin`` may not do this (no ``Origin``: not a browser)."""
        if origin is None:
            return False
        return not self.is_allowed_origin(origin) and not self.is_own_origin(origin, scope)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the origin of WebSocket handshakes and of changes; preflights; CORS headers."""
        if scope["type"] == "websocket":
            origin = Headers(scope=scope).get("origin")
            if self.origin_refused(origin, scope):
                await deny_websocket(scope, receive, send, _refused_origin(origin))
                return
            await self.app(scope, receive, send)
            return
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
            origin = Headers(scope=scope).get("origin")
            if self.origin_refused(origin, scope):
                await _refused_origin(origin)(scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    def preflight_response(self, request_headers: Headers) -> Response:
        """204 with the allowing headers, or 403 ``{"message"}`` naming what is not allowed."""
        answer = super().preflight_response(request_headers)
        headers = {
            name: value
            for name, value in answer.headers.items()
            if name.lower() not in ("content-length", "content-type")
        }
        if answer.status_code == 200:
            return Response(status_code=204, headers=headers)
        refused = bytes(answer.body).decode().removeprefix("Disallowed CORS ")
        headers = {
            name: value
            for name, value in headers.items()
            if not name.lower().startswith("access-control-allow-")
        }
        return JSONResponse(
            {"message": f"CORS preflight refused: {refused} not allowed"},
            status_code=403,
            headers=headers,
        )


def _refused_origin(origin: str | None) -> Response:
    shown = (origin or "")[:200]
    return JSONResponse({"message": f"origin {shown} is not allowed"}, status_code=403)
