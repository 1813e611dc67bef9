"""Where callbacks may go: ``PISTON_CALLBACK_ALLOW``, checked on every resolved address.

A callback makes the gateway send a request on a stranger's behalf, so where it may go is the
operator's decision (no server-side request forgery). ``PISTON_CALLBACK_ALLOW`` lists what is
allowed: ``public`` (every globally routable unicast address) and networks (``10.1.0.0/16``,
``127.0.0.1``, ``::1``); ``none`` or nothing allows no callback at all. Everything else is
refused: by default loopback, private, link-local, shared (100.64/10), multicast, reserved and
documentation ranges, and IPv6 forms that embed such an IPv4 address (mapped ``::ffff:0:0/96``,
6to4, Teredo, NAT64 ``64:ff9b::/96``).

A host name is resolved and **every** address it resolves to must be allowed; the connection
then goes to one of those checked addresses (:mod:`~pistond.submissions.delivery`), never to a
second resolution, so a name that changes its answer between the check and the connection (DNS
rebinding) gains nothing. The reasons given to clients never say what a name resolved to.
"""

from __future__ import annotations

import ipaddress
import socket
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, TypeAlias

import attrs
import trio

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver: TypeAlias = Callable[[str, int], Awaitable[Sequence[str]]]
"""Host name and port to the addresses it resolves to, as text."""

MAX_URL_LENGTH: Final = 2048
RESOLVE_TIMEOUT: Final = 5.0
"""Seconds a callback host's name may take to resolve."""
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")
NOT_ALLOWED: Final = (
    "callback_url is not an address this server may call back (see PISTON_CALLBACK_ALLOW)"
)
DISABLED: Final = "callback_url is not accepted: this server makes no callbacks"


class CallbackRefused(Exception):
    """Raised by :meth:`CallbackPolicy.check` when a callback URL may not be called.

    Its message is for the client: it names the rule, never a resolved address.
    """


@attrs.frozen
class Target:
    """A callback URL taken apart, as it will be requested."""

    scheme: str
    """``http`` or ``https``."""
    host: str
    """A DNS name (lower case, ASCII) or an IP address (IPv6 without brackets)."""
    port: int
    target: str
    """Path and query, as sent in the request line."""


def parse_callback_url(url: object) -> Target:
    """Check the shape of a ``callback_url`` and take it apart.

    Raises:
        CallbackRefused: not a string, not printable ASCII, too long, not http(s), with a
            user name or password, without a host, or with a bad port.
    """
    if not isinstance(url, str):
        raise CallbackRefused("callback_url must be a string")
    if len(url) > MAX_URL_LENGTH:
        raise CallbackRefused(f"callback_url is longer than {MAX_URL_LENGTH} characters")
    if not url.isascii() or not url.isprintable() or " " in url:
        raise CallbackRefused(
            "callback_url must be printable ASCII without spaces (percent-encode the rest)"
        )
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise CallbackRefused("callback_url must be an http:// or https:// URL")
    if "@" in parts.netloc or "\\" in url:
        raise CallbackRefused("callback_url must not hold a user name or password")
    host = parts.hostname
    if not host:
        raise CallbackRefused("callback_url has no host")
    try:
        port = parts.port
    except ValueError:
        raise CallbackRefused("callback_url has an invalid port") from None
    scheme = parts.scheme.lower()
    if port is None:
        port = 443 if scheme == "https" else 80
    if port == 0:
        raise CallbackRefused("callback_url has an invalid port")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(scheme=scheme, host=host, port=port, target=target)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses that packets to ``address`` may end up at (6to4, Teredo, NAT64)."""
    found = [address.sixtofour] if address.sixtofour is not None else []
    if address.teredo is not None:
        found += list(address.teredo)
    if address in _NAT64:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def is_public(address: IPAddress) -> bool:
    """Whether ``address`` is a globally routable unicast address (and embeds no other)."""
    if address.is_multicast or not address.is_global:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        return all(is_public(embedded) for embedded in _embedded_ipv4(address))
    return True


def normalised(address: IPAddress) -> IPAddress:
    """``address``, with an IPv4-mapped IPv6 address as the IPv4 address it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


async def resolve_host(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to (an address resolves to itself, without DNS)."""
    found = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(sockaddr[0]) for *_, sockaddr in found]


@attrs.frozen
class CallbackPolicy:
    """Which addresses callbacks may go to (``PISTON_CALLBACK_ALLOW``)."""

    public: bool = True
    """Every globally routable unicast address."""
    networks: tuple[IPNetwork, ...] = ()
    """Networks allowed besides (or instead of) the public ones."""
    resolver: Resolver = attrs.field(default=resolve_host, eq=False)
    """Host name to addresses (a test seam; the system resolver by default)."""

    @classmethod
    def from_entries(
        cls,
        entries: Sequence[str],
        resolver: Resolver = resolve_host,
    ) -> CallbackPolicy:
        """The policy of ``PISTON_CALLBACK_ALLOW``'s entries (checked by the configuration)."""
        networks = tuple(
            ipaddress.ip_network(entry, strict=False)
            for entry in entries
            if entry not in ("public", "none")
        )
        return cls(public="public" in entries, networks=networks, resolver=resolver)

    @property
    def enabled(self) -> bool:
        """Whether any callback may be made at all."""
        return self.public or bool(self.networks)

    def allows(self, address: IPAddress) -> bool:
        """Whether a callback may connect to ``address``."""
        address = normalised(address)
        if any(address in network for network in self.networks):
            return True
        return self.public and is_public(address)

    async def addresses(self, host: str, port: int) -> list[IPAddress]:
        """The addresses of ``host``, all of them allowed.

        Raises:
            CallbackRefused: callbacks are disabled, the name does not resolve (within
                :data:`RESOLVE_TIMEOUT`), or any address it resolves to is not allowed.
        """
        if not self.enabled:
            raise CallbackRefused(DISABLED)
        found = await self._resolve(host, port)
        if not found or not all(self.allows(address) for address in found):
            raise CallbackRefused(NOT_ALLOWED)
        return found

    async def _resolve(self, host: str, port: int) -> list[IPAddress]:
        try:
            return [ipaddress.ip_address(host)]
        except ValueError:
            pass
        with trio.move_on_after(RESOLVE_TIMEOUT):
            try:
                texts = await self.resolver(host, port)
                # A scope (fe80::1%eth0) does not change what the address is.
                return [ipaddress.ip_address(text.partition("%")[0]) for text in texts]
            except (OSError, ValueError):
                return []
        return []

    async def check(self, url: object) -> Target:
        """Check a ``callback_url`` as a submission is accepted: its shape and its addresses.

        Raises:
            CallbackRefused: why the server will not call it.
        """
        target = parse_callback_url(url)
        await self.addresses(target.host, target.port)
        return target
