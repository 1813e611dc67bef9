"""Who made a request: the client's address (behind trusted proxies) and its API key, if any.

The access middleware (:mod:`pistond.gateway.auth`) puts a :class:`Caller` in every HTTP and
WebSocket scope; fair shares, rate limits and the audit log read it from there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import attrs

from pistond.gateway.proxies import UNKNOWN, share_of

if TYPE_CHECKING:
    from starlette.requests import HTTPConnection
    from starlette.types import Scope

    from pistond.gateway.apikeys import ApiKey

CALLER: Final = "pistond.caller"
"""The scope key of the request's :class:`Caller`."""


@attrs.frozen
class Caller:
    """The client of one request."""

    client: str
    """Its address (the first untrusted one of ``X-Forwarded-For`` behind trusted proxies)."""
    key: ApiKey | None = None
    """The API key it presented and that was accepted; None without keys."""

    @property
    def share(self) -> str:
        """The name its limits are counted under: ``key <id>``, or its address (IPv6: /64)."""
        if self.key is not None:
            return f"key {self.key.id}"
        return share_of(self.client)


def caller_of(connection: HTTPConnection) -> Caller:
    """The caller of a request or WebSocket session (its peer, if no middleware set one)."""
    return scope_caller(connection.scope)


def scope_caller(scope: Scope) -> Caller:
    """The caller of an ASGI scope (see :func:`caller_of`)."""
    found = scope.get(CALLER)
    if isinstance(found, Caller):
        return found
    peer = scope.get("client")
    return Caller(UNKNOWN if peer is None else str(peer[0]))
