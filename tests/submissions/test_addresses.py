"""pistond.submissions.addresses: PISTON_CALLBACK_ALLOW on every resolved address (no SSRF)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import pytest

from pistond.submissions.addresses import (
    DISABLED,
    NOT_ALLOWED,
    CallbackPolicy,
    CallbackRefused,
    Resolver,
    Target,
    is_public,
    parse_callback_url,
)

DENIED_BY_DEFAULT = [
    "127.0.0.1", "127.1.2.3", "0.0.0.0", "10.0.0.1", "172.16.5.4", "192.168.1.1",
    "169.254.169.254", "100.64.0.1", "224.0.0.1", "233.252.0.1", "255.255.255.255",
    "192.0.2.1", "198.18.0.1", "::1", "::", "fe80::1", "fc00::1", "ff02::1", "2001:db8::1",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "2002:7f00:1::", "64:ff9b::7f00:1",
    "64:ff9b::a00:1",
]  # fmt: skip
PUBLIC = ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "64:ff9b::808:808"]


def _resolving(table: dict[str, Sequence[str]]) -> Resolver:
    async def resolve(host: str, port: int) -> Sequence[str]:
        if host not in table:
            raise OSError("name not known")
        return table[host]

    return resolve


@pytest.mark.parametrize("address", DENIED_BY_DEFAULT)
def test_addresses_default_denies_non_public(address: str) -> None:
    """By default loopback, private, link-local, shared, multicast, reserved, documentation
    and IPv6 forms embedding such IPv4 addresses are refused."""
    assert not CallbackPolicy().allows(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC)
def test_addresses_default_allows_public(address: str) -> None:
    """Globally routable unicast addresses are allowed by default."""
    assert is_public(ipaddress.ip_address(address))
    assert CallbackPolicy().allows(ipaddress.ip_address(address))


def test_addresses_allow_list_adds_networks() -> None:
    """Listed networks are allowed besides (or, without ``public``, instead of) public ones;
    an IPv4-mapped address counts as its IPv4 address."""
    policy = CallbackPolicy.from_entries(["127.0.0.0/8", "fd00::/8"])
    assert policy.allows(ipaddress.ip_address("127.0.0.1"))
    assert policy.allows(ipaddress.ip_address("::ffff:127.0.0.1"))
    assert policy.allows(ipaddress.ip_address("fd12::1"))
    assert not policy.allows(ipaddress.ip_address("8.8.8.8"))
    assert not policy.allows(ipaddress.ip_address("10.0.0.1"))
    both = CallbackPolicy.from_entries(["public", "10.1.0.0/16"])
    assert both.allows(ipaddress.ip_address("8.8.8.8"))
    assert both.allows(ipaddress.ip_address("10.1.2.3"))
    assert not both.allows(ipaddress.ip_address("10.2.0.1"))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (5, "callback_url must be a string"),
        ("ftp://example.org/", "callback_url must be an http:// or https:// URL"),
        ("file:///etc/passwd", "callback_url must be an http:// or https:// URL"),
        ("http://user:pw@example.org/", "callback_url must not hold a user name or password"),
        ("http://example.org\\@10.0.0.1/", "callback_url must not hold a user name or password"),
        ("http:///path", "callback_url has no host"),
        ("http://example.org:99999/", "callback_url has an invalid port"),
        ("http://example.org:0/", "callback_url has an invalid port"),
        ("http://exa mple.org/", "callback_url must be printable ASCII"),
        ("http://例え.jp/", "callback_url must be printable ASCII"),
        ("http://example.org/" + "a" * 2100, "callback_url is longer than 2048 characters"),
    ],
)
def test_addresses_url_shapes_refused(url: object, message: str) -> None:
    """Only plain http(s) URLs with a host are callback URLs, each refusal with its reason."""
    with pytest.raises(CallbackRefused, match="^" + message.replace("\\", "\\\\")):
        parse_callback_url(url)


def test_addresses_url_taken_apart() -> None:
    """Scheme, host, port (defaulted) and the request target, as they will be sent."""
    assert parse_callback_url("HTTPS://Hooks.Example.org/a/b?x=1#frag") == Target(
        "https", "hooks.example.org", 443, "/a/b?x=1"
    )
    assert parse_callback_url("http://[::1]:8080") == Target("http", "::1", 8080, "/")


async def test_addresses_every_resolved_address_must_be_allowed() -> None:
    """A name is allowed only if all its addresses are: one private address refuses it."""
    resolve = _resolving(
        {"good.test": ["127.0.0.5"], "mixed.test": ["127.0.0.5", "10.0.0.7"], "none.test": []}
    )
    policy = CallbackPolicy.from_entries(["127.0.0.0/8"], resolver=resolve)
    assert await policy.check("http://good.test:81/x") == Target("http", "good.test", 81, "/x")
    for host in ("mixed.test", "none.test", "unknown.test"):
        with pytest.raises(CallbackRefused) as caught:
            await policy.check(f"http://{host}/")
        assert str(caught.value) == NOT_ALLOWED
        assert "10.0.0.7" not in str(caught.value)


async def test_addresses_literal_addresses_need_no_resolver() -> None:
    """An IP address in the URL is checked as it is (the resolver is not asked)."""

    async def never(host: str, port: int) -> Sequence[str]:
        raise AssertionError("resolved a literal address")

    policy = CallbackPolicy.from_entries(["::1"], resolver=never)
    await policy.check("http://[::1]:9/")
    with pytest.raises(CallbackRefused, match="not an address"):
        await policy.check("http://127.0.0.1:9/")


async def test_addresses_disabled_refuses_everything() -> None:
    """``none`` (or nothing) allows no callback at all."""
    for entries in (["none"], []):
        policy = CallbackPolicy.from_entries(entries)
        assert not policy.enabled
        with pytest.raises(CallbackRefused, match=DISABLED):
            await policy.check("http://8.8.8.8/")


async def test_addresses_system_resolver_localhost_is_loopback() -> None:
    """The system resolver's answer for localhost (loopback) is refused by default."""
    with pytest.raises(CallbackRefused, match="not an address"):
        await CallbackPolicy().check("http://localhost:9/")
    await CallbackPolicy.from_entries(["127.0.0.0/8", "::1"]).check("http://localhost:9/")
