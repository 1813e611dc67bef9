"""One callback delivery: a ``POST`` of the submission's JSON, to an address already checked.

httpcore does the HTTP (and TLS, verified against the system's certificate authorities for
the URL's host name); its network backend is wrapped so that every connection it opens first
resolves the host through :class:`~pistond.submissions.addresses.CallbackPolicy`, requires every
resolved address to be allowed, and then connects to one of those addresses itself: the check
and the connection use one resolution (no DNS rebinding between them). No proxy from the
environment is used, redirects are not followed, and the receiver's answer body is never read.
"""

from __future__ import annotations

import enum
import ssl
from typing import TYPE_CHECKING, Final

import attrs
import httpcore

from pistond import __version__
from pistond.submissions.addresses import NOT_ALLOWED, CallbackRefused

if TYPE_CHECKING:
    from collections.abc import Iterable

    from pistond.submissions.addresses import CallbackPolicy, Target

USER_AGENT: Final = f"pistond/{__version__} (submission callback)"
_RETRYABLE: Final = frozenset({408, 425, 429})


class Verdict(enum.StrEnum):
    """How one attempt went."""

    DELIVERED = "delivered"
    """The receiver answered 2xx."""
    RETRY = "retry"
    """Worth another attempt: no connection, a timeout, 408, 425, 429 or 5xx."""
    FAILED = "failed"
    """Another attempt would get the same answer (another 4xx, a redirect)."""
    REFUSED = "refused"
    """The URL may not be called (``PISTON_CALLBACK_ALLOW``); nothing was sent."""


@attrs.frozen
class Delivery:
    """The verdict of one attempt and what happened, for the submission's record."""

    verdict: Verdict
    detail: str
    """``HTTP 204``, ``connection failed``, ``timed out``, ... (no address, no body)."""


class CheckedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's trio backend, connecting only to addresses the policy allows."""

    def __init__(self, policy: CallbackPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.TrioBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109  (httpcore's backend interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Resolve and check ``host`` once, then connect to its checked addresses in turn.

        Raises:
            CallbackRefused: an address of ``host`` is not allowed (nothing is connected).
        """
        addresses = await self._policy.addresses(host, port)
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None  # addresses() never returns an empty list
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109  (httpcore's backend interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Never: callbacks go to TCP addresses only."""
        raise CallbackRefused(NOT_ALLOWED)

    async def sleep(self, seconds: float) -> None:
        """As the trio backend sleeps."""
        await self._inner.sleep(seconds)


def _verdict(status: int) -> Delivery:
    detail = f"HTTP {status}"
    if 200 <= status < 300:
        return Delivery(Verdict.DELIVERED, detail)
    if status in _RETRYABLE or status >= 500:
        return Delivery(Verdict.RETRY, detail)
    if 300 <= status < 400:
        return Delivery(Verdict.FAILED, f"{detail} (redirects are not followed)")
    return Delivery(Verdict.FAILED, detail)


async def deliver(
    target: Target,
    body: bytes,
    *,
    policy: CallbackPolicy,
    ssl_context: ssl.SSLContext | None = None,
) -> Delivery:
    """``POST`` ``body`` (JSON) to ``target``; the caller bounds the attempt with a deadline.

    Args:
        target: the callback URL, taken apart and checked for shape.
        body: the JSON document to send.
        policy: where connections may go; checked again here, on this attempt's resolution.
        ssl_context: TLS settings; the system's defaults (certificates verified) if None.
    """
    url = httpcore.URL(
        scheme=target.scheme.encode(),
        host=target.host.encode(),
        port=target.port,
        target=target.target.encode(),
    )
    headers = [
        (b"Content-Type", b"application/json"),
        (b"User-Agent", USER_AGENT.encode()),
        (b"Content-Length", str(len(body)).encode()),
    ]
    async with httpcore.AsyncConnectionPool(
        ssl_context=ssl_context or ssl.create_default_context(),
        max_connections=1,
        retries=0,
        network_backend=CheckedBackend(policy),
    ) as pool:
        try:
            async with pool.stream("POST", url, headers=headers, content=body) as response:
                return _verdict(response.status)
        except CallbackRefused as exc:
            return Delivery(Verdict.REFUSED, str(exc))
        except httpcore.TimeoutException:
            return Delivery(Verdict.RETRY, "timed out")
        except httpcore.ConnectError:
            return Delivery(Verdict.RETRY, "connection failed")
        except (httpcore.NetworkError, httpcore.ProtocolError) as exc:
            return Delivery(Verdict.RETRY, f"connection broke ({type(exc).__name__})")
