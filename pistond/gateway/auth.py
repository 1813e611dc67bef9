"""API key authentication: which routes need a key, how it is sent, 401 and 403.

Keys are off unless ``PISTON_GATEWAY_API_KEYS`` is ``file`` or ``database``; then every route
needs a valid key except the open ones (:data:`OPEN_ROUTES`: Piston's banner, the playground's
files, health, information and the OpenAPI document), and installing or uninstalling packages
also needs a key with the ``packages`` right. Listing packages needs a key like every other
route: no package route is open to anonymous callers.

A key travels as ``Authorization: Bearer <key>``, or as the bare ``Authorization: <key>`` that
clients of the public Piston instance send. Answers:

- no key: 401 ``{"message": "an API key is required ..."}`` with
  ``WWW-Authenticate: Bearer realm="pistond"``;
- a key that is not one, or revoked: 401 ``{"message": "invalid API key"}`` (``... was
  revoked``), with ``error="invalid_token"`` in ``WWW-Authenticate`` (RFC 6750 §3);
- a key without the right: 403 ``{"message": "this API key may not manage packages"}``;
- keys that cannot be read (database down): 503 with ``Retry-After``.

WebSocket handshakes get the same answers as HTTP responses to the upgrade request. The
middleware also resolves every request's client address (:mod:`pistond.gateway.proxies`) and
leaves a :class:`~pistond.gateway.caller.Caller` in the scope, keys on or off.
"""

from __future__ import annotations

import enum
import logging
from typing import TYPE_CHECKING, Final

import attrs
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.websockets import WebSocket

from pistond.gateway.apikeys import KeyStoreUnavailable, key_id
from pistond.gateway.caller import CALLER, Caller
from pistond.gateway.errors import RETRY_AFTER_SECONDS
from pistond.gateway.proxies import TrustedProxies

if TYPE_CHECKING:
    from starlette.responses import Response
    from starlette.types import ASGIApp, Receive, Scope, Send

    from pistond.gateway.apikeys import ApiKey, KeyStore

logger = logging.getLogger(__name__)

REALM: Final = 'Bearer realm="pistond"'
KEY_REQUIRED: Final = "an API key is required: send it as Authorization: Bearer <key>"
INVALID_KEY: Final = "invalid API key"
REVOKED_KEY: Final = "this API key was revoked"
NO_PACKAGES_RIGHT: Final = "this API key may not manage packages"
OPEN_ROUTES: Final = frozenset(
    {
        "/",
        "/playground",
        "/api/v2/health",
        "/api/v2/health/live",
        "/api/v2/health/ready",
        "/api/v2/info",
        "/api/v2/openapi.json",
    }
)
"""Routes served without a key (with and without a trailing slash)."""
OPEN_PREFIXES: Final = ("/playground/",)
"""The playground's files (its page, scripts and examples hold nothing private)."""


class Right(enum.Enum):
    """What a route needs when keys are on."""

    OPEN = "open"
    KEY = "key"
    PACKAGES = "packages"


def required_right(method: str, path: str) -> Right:
    """What ``method path`` needs when keys are on (every route that is not open needs a key,
    unknown ones included)."""
    if path != "/":
        path = path.rstrip("/") or "/"
    if path in OPEN_ROUTES or path.startswith(OPEN_PREFIXES):
        return Right.OPEN
    if path == "/api/v2/packages" and method in ("POST", "DELETE"):
        return Right.PACKAGES
    return Right.KEY


def presented_key(headers: Headers) -> str | None:
    """The key a request presents: ``Authorization: Bearer <key>`` or ``Authorization: <key>``."""
    value = headers.get("authorization")
    if value is None:
        return None
    value = value.strip()
    scheme, space, rest = value.partition(" ")
    if space and scheme.lower() == "bearer":
        return rest.strip()
    return value


@attrs.frozen
class Refusal(Exception):
    """Raised by :meth:`Authenticator.authenticate` for a request it does not let through."""

    status: int
    message: str
    headers: dict[str, str] = attrs.field(factory=dict)

    def response(self) -> Response:
        """The JSON answer."""
        return JSONResponse({"message": self.message}, self.status, headers=self.headers)


@attrs.define(eq=False)
class Authenticator:
    """Checks requests against the key store (None: keys are off)."""

    store: KeyStore | None

    @property
    def enabled(self) -> bool:
        """Whether keys are required."""
        return self.store is not None

    async def authenticate(self, method: str, path: str, headers: Headers) -> ApiKey | None:
        """The accepted key of a request; None for an open route (or keys off).

        A key presented to an open route is looked at too, so that the audit log names it,
        but a bad one is no reason to refuse what anyone may see.

        Raises:
            Refusal: 401, 403 or 503 (see the module's description).
        """
        if self.store is None:
            return None
        right = required_right(method, path)
        presented = presented_key(headers)
        if right is Right.OPEN:
            if presented is None:
                return None
            try:
                return await self._check(presented)
            except Refusal:
                return None
        if presented is None:
            raise Refusal(401, KEY_REQUIRED, {"WWW-Authenticate": REALM})
        key = await self._check(presented)
        if right is Right.PACKAGES and not key.policy.packages:
            raise Refusal(403, NO_PACKAGES_RIGHT)
        return key

    async def _check(self, presented: str) -> ApiKey:
        assert self.store is not None
        invalid = {"WWW-Authenticate": f'{REALM}, error="invalid_token"'}
        wanted = key_id(presented)
        if wanted is None:
            raise Refusal(401, INVALID_KEY, invalid)
        try:
            key = await self.store.find(wanted)
        except KeyStoreUnavailable as exc:
            raise Refusal(503, str(exc), {"Retry-After": str(RETRY_AFTER_SECONDS)}) from None
        if key is None or not key.matches(presented):
            raise Refusal(401, INVALID_KEY, invalid)
        if key.revoked is not None:
            raise Refusal(401, REVOKED_KEY, invalid)
        return key


@attrs.define(eq=False)
class AccessMiddleware:
    """ASGI middleware: the caller of every request (client address, key), or its refusal."""

    app: ASGIApp
    authenticator: Authenticator
    proxies: TrustedProxies = attrs.field(factory=TrustedProxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Resolve the caller, refuse what needs a key it lacks, pass the rest on."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        client = self.proxies.client_of(scope)
        method = scope.get("method", "GET") if scope["type"] == "http" else "GET"
        try:
            key = await self.authenticator.authenticate(method, scope["path"], Headers(scope=scope))
        except Refusal as refusal:
            scope[CALLER] = Caller(client)
            logger.debug(
                "refused a request from %s: %d %s", client, refusal.status, refusal.message
            )
            if scope["type"] == "websocket":
                await deny_websocket(scope, receive, send, refusal.response())
            else:
                await refusal.response()(scope, receive, send)
            return
        scope[CALLER] = Caller(client, key)
        await self.app(scope, receive, send)


async def deny_websocket(scope: Scope, receive: Receive, send: Send, response: Response) -> None:
    """Refuse a WebSocket handshake with an HTTP ``response`` (close 1008 where the server
    cannot send one)."""
    websocket = WebSocket(scope, receive, send)
    if "websocket.http.response" in scope.get("extensions", {}):
        await websocket.send_denial_response(response)
    else:
        await websocket.close(code=1008)
