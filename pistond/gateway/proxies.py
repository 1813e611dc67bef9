"""Who the client is behind trusted proxies: ``X-Forwarded-For`` read from the right.

A request's peer is the client, unless the peer is one of ``PISTON_GATEWAY_TRUSTED_PROXIES``.
Then the addresses of ``X-Forwarded-For`` (every such header, in order, comma-separated) are
read from the right, skipping trusted proxies: the first address that is not one is the
client. Entries to its left were written by the client itself and mean nothing. When every
entry is trusted, the leftmost is the client; an entry that is not an address ends the walk at
the last proxy that wrote a valid one. Without trusted proxies the header is ignored, so a
client cannot choose its own address.

Limits count IPv6 clients by their /64 (one customer's subnet, as providers assign them), so
an address change within it does not give a client a fresh share.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Final

import attrs

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from starlette.types import Scope

IPV6_SHARE_PREFIX: Final = 64
"""IPv6 clients share their limits within a /64."""
UNKNOWN: Final = "?"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_address(text: str) -> Address | None:
    """An address from a header entry (``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``, ``::1``);
    IPv4-mapped IPv6 addresses become IPv4; None for anything else."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def share_of(client: str) -> str:
    """The name a client's limits are counted under: its address, IPv6 by its /64."""
    address = parse_address(client)
    if isinstance(address, ipaddress.IPv6Address):
        network = ipaddress.IPv6Network((address, IPV6_SHARE_PREFIX), strict=False)
        return str(network)
    return client if address is None else str(address)


@attrs.frozen
class TrustedProxies:
    """The proxies whose ``X-Forwarded-For`` is believed."""

    networks: tuple[Network, ...] = ()

    @classmethod
    def from_entries(cls, entries: Iterable[str]) -> TrustedProxies:
        """From ``PISTON_GATEWAY_TRUSTED_PROXIES`` entries (validated by the configuration)."""
        return cls(tuple(ipaddress.ip_network(entry, strict=False) for entry in entries))

    def trusts(self, address: Address) -> bool:
        """Whether ``address`` is a trusted proxy."""
        return any(address in network for network in self.networks)

    def client(self, peer: str | None, forwarded_for: Sequence[str]) -> str:
        """The client's address, given the peer's and the ``X-Forwarded-For`` header values."""
        if peer is None:
            return UNKNOWN
        address = parse_address(peer)
        if address is None:
            return peer or UNKNOWN  # a Unix socket peer
        if not self.networks or not self.trusts(address):
            return str(address)
        entries = [entry for value in forwarded_for for entry in value.split(",")]
        for entry in reversed(entries):
            hop = parse_address(entry)
            if hop is None:
                break
            address = hop
            if not self.trusts(hop):
                break
        return str(address)

    def client_of(self, scope: Scope) -> str:
        """The client of an ASGI HTTP or WebSocket scope."""
        peer = scope.get("client")
        forwarded = [
            value.decode("latin-1")
            for name, value in scope.get("headers", ())
            if name == b"x-forwarded-for"
        ]
        return self.client(None if peer is None else str(peer[0]), forwarded)
