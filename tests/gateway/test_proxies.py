"""pistond.gateway.proxies: the client behind trusted proxies, and the share it counts under."""

from __future__ import annotations

import pytest

from pistond.gateway.proxies import TrustedProxies, parse_address, share_of

PROXIES = TrustedProxies.from_entries(["10.0.0.0/8", "::1"])


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("1.2.3.4", "1.2.3.4"),
        (" 1.2.3.4:5678 ", "1.2.3.4"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("unknown", None),
        ("", None),
        ("1.2.3.4.5", None),
    ],
)
def test_proxies_parse_address(text: str, address: str | None) -> None:
    """Header entries with ports, brackets and IPv4-mapped forms; anything else is None."""
    parsed = parse_address(text)
    assert (None if parsed is None else str(parsed)) == address


def test_proxies_without_trusted_proxies_the_peer_is_the_client() -> None:
    """X-Forwarded-For is ignored unless the peer is trusted."""
    assert TrustedProxies().client("203.0.113.5", ["198.51.100.1"]) == "203.0.113.5"
    assert PROXIES.client("203.0.113.5", ["198.51.100.1"]) == "203.0.113.5"


def test_proxies_first_untrusted_from_the_right() -> None:
    """Read from the right, trusted hops skipped; what the client wrote to the left is ignored."""
    assert PROXIES.client("10.0.0.2", ["198.51.100.1"]) == "198.51.100.1"
    assert PROXIES.client("10.0.0.2", ["6.6.6.6, 198.51.100.1, 10.0.0.3"]) == "198.51.100.1"
    assert PROXIES.client("::1", ["6.6.6.6", "198.51.100.1", "10.9.9.9"]) == "198.51.100.1"


def test_proxies_all_trusted_or_garbage() -> None:
    """All hops trusted: the leftmost; a bad entry: the last proxy that wrote a valid one; no
    header: the proxy itself."""
    assert PROXIES.client("10.0.0.2", ["10.0.0.5, 10.0.0.4"]) == "10.0.0.5"
    assert PROXIES.client("10.0.0.2", ["198.51.100.1, junk, 10.0.0.4"]) == "10.0.0.4"
    assert PROXIES.client("10.0.0.2", []) == "10.0.0.2"
    assert PROXIES.client(None, []) == "?"


def test_proxies_ipv6_clients_share_their_slash_64() -> None:
    """IPv6 addresses of one /64 count as one client; IPv4 addresses as themselves."""
    assert share_of("2001:db8:1:2::5") == share_of("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert share_of("2001:db8:1:3::5") != share_of("2001:db8:1:2::5")
    assert share_of("192.0.2.1") == "192.0.2.1"
    assert share_of("?") == "?"
