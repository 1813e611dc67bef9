"""Fair sharing of the gateway: counted places, in all and per client, refused beyond their cap.

A :class:`Places` counts what is held at once (connections, WebSocket sessions, jobs) in all and
per client, where a client is the key the caller gives: the peer address for connections, and
for jobs the request's :class:`~pistond.gateway.caller.Caller` (its API key, or its address
behind trusted proxies), whose key may have a cap of its own. Taking a place never waits:
beyond a cap the caller answers at once, 503 when the gateway as a whole is full and 429 when
this one client holds its share, each with ``Retry-After``, as the public Piston instance does.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Final

import attrs

from pistond.gateway.caller import caller_of

if TYPE_CHECKING:
    from collections.abc import Iterator

    from starlette.requests import HTTPConnection

RETRY_AFTER_SECONDS: Final = 1
"""``Retry-After`` of a refusal: places free up as soon as a job or a connection ends."""


@attrs.frozen
class Full(Exception):
    """Raised by :meth:`Places.take` when no place is free: for all (503) or this client (429)."""

    status: int
    message: str

    def __str__(self) -> str:
        return f"{self.status} {self.message}"


@attrs.define(eq=False)
class Places:
    """Places held at once, capped in all (``total``) and per client (``per_client``); 0: no cap.

    Args:
        what: the plural noun refusals name, e.g. ``"connections"``.
    """

    what: str
    total: int = 0
    per_client: int = 0
    held: int = 0
    _by_client: dict[str, int] = attrs.field(factory=dict)

    def held_by(self, client: str) -> int:
        """Places ``client`` holds now."""
        return self._by_client.get(client, 0)

    def take(self, client: str, per_client: int | None = None) -> None:
        """Take a place for ``client``, which may hold ``per_client`` (default: the cap of
        all clients; 0: no cap).

        Raises:
            Full: 503 when ``total`` places are held, 429 when ``client`` holds its cap.
        """
        cap = self.per_client if per_client is None else per_client
        if self.total and self.held >= self.total:
            raise Full(503, f"the gateway is at its limit of {self.total} {self.what}")
        if cap and self.held_by(client) >= cap:
            raise Full(429, f"too many {self.what} from this client (at most {cap})")
        self.held += 1
        self._by_client[client] = self.held_by(client) + 1

    def give_back(self, client: str) -> None:
        """Return a place ``client`` took."""
        self.held -= 1
        left = self.held_by(client) - 1
        if left > 0:
            self._by_client[client] = left
        else:
            self._by_client.pop(client, None)

    @contextmanager
    def hold(self, client: str, per_client: int | None = None) -> Iterator[None]:
        """Hold a place for the duration of the block (see :meth:`take`)."""
        self.take(client, per_client)
        try:
            yield
        finally:
            self.give_back(client)


def client_key(connection: HTTPConnection) -> str:
    """The client a request or WebSocket session counts against: its API key, or its address
    (behind trusted proxies; IPv6 by its /64)."""
    return caller_of(connection).share


def jobs_cap(connection: HTTPConnection) -> int | None:
    """The number of jobs the request's API key may run at once; None: the default cap."""
    key = caller_of(connection).key
    return None if key is None else key.policy.concurrent_jobs
