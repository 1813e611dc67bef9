"""API keys: their records and rights, how a key is made, and how a presented key is checked.

A key reads ``pistond_<id>_<secret>``: ``id`` is 12 hex digits, public (it names the key in
logs and in ``pistond-gateway keys list``), and ``secret`` is 256 random bits in base64url.
Only the SHA-256 digest of the whole key is stored: for a key with that much entropy a fast
hash is as strong as a password hash (nobody can search 2^256 inputs), and checking it costs
microseconds per request. A presented key is found by its id and compared with
:func:`hmac.compare_digest`, so neither the lookup nor the comparison depends on the secret.

Stores (:class:`KeyStore`) keep the records: a TOML file (:mod:`pistond.gateway.keyfile`) or
the submissions database (:mod:`pistond.gateway.keydb`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from typing import TYPE_CHECKING, Any, Final, Protocol

import attrs

from pistond.config import PISTON_REQUEST_LIMIT_KEYS

if TYPE_CHECKING:
    from collections.abc import Mapping

KEY_PREFIX: Final = "pistond_"
ID_BYTES: Final = 6
"""12 hex digits: the public part of a key."""
SECRET_BYTES: Final = 32
"""256 bits from the operating system's CSPRNG."""
_KEY: Final = re.compile(r"pistond_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
_ID: Final = re.compile(r"[0-9a-f]{12}")
CAPPABLE_LIMITS: Final = PISTON_REQUEST_LIMIT_KEYS
"""The request limits a key's ``max_limits`` may cap (Piston's six, in its order)."""


class KeyStoreUnavailable(Exception):
    """Raised by a :class:`KeyStore` when its keys cannot be read (file unreadable, database
    down): the gateway answers 503 rather than letting anyone in or out."""


class KeyRecordError(ValueError):
    """Raised when a key record or a key's settings are invalid; the message says which."""


def _optional_count(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or value < 0):
        raise KeyRecordError(f"{name} must be a non-negative integer, got {value!r}")


@attrs.frozen
class KeyPolicy:
    """What a key may do. ``None`` means the gateway's default; 0 means no cap."""

    jobs_per_minute: int | None = None
    """Jobs the key may start per minute (its token bucket's refill); None:
    ``PISTON_GATEWAY_RATE_LIMIT``; 0: no rate limit."""
    burst: int | None = None
    """Jobs the key may start at once from a full bucket; None: a minute's worth."""
    concurrent_jobs: int | None = None
    """Jobs the key may run at once; None: ``PISTON_GATEWAY_MAX_JOBS_PER_CLIENT``; 0: no cap."""
    max_limits: Mapping[str, int] = attrs.field(factory=dict)
    """The most the key may request of each limit (``run_timeout``: 3000, ...); a request
    that names none gets at most this."""
    packages: bool = False
    """Whether the key may install and uninstall packages."""

    def __attrs_post_init__(self) -> None:
        _optional_count("jobs_per_minute", self.jobs_per_minute)
        _optional_count("concurrent_jobs", self.concurrent_jobs)
        if self.burst is not None and (isinstance(self.burst, bool) or self.burst < 1):
            raise KeyRecordError(f"burst must be a positive integer, got {self.burst!r}")
        for name, value in self.max_limits.items():
            if name not in CAPPABLE_LIMITS:
                raise KeyRecordError(
                    f"max_limits: {name!r} is not one of {', '.join(CAPPABLE_LIMITS)}"
                )
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise KeyRecordError(
                    f"max_limits: {name} must be a positive integer, got {value!r}"
                )


@attrs.frozen
class ApiKey:
    """One key as stored: its id, the digest of the key, its policy and its history."""

    id: str
    """The public 12 hex digits."""
    digest: str
    """Hex SHA-256 of the whole key."""
    name: str = ""
    """What the operator called it (``keys add --name``)."""
    created: float = 0.0
    """Seconds since the epoch."""
    revoked: float | None = None
    """When it was revoked; a revoked key is refused."""
    policy: KeyPolicy = attrs.field(factory=KeyPolicy)

    def __attrs_post_init__(self) -> None:
        if not _ID.fullmatch(self.id):
            raise KeyRecordError(f"key id must be 12 lower-case hex digits, got {self.id!r}")
        if not re.fullmatch(r"[0-9a-f]{64}", self.digest):
            raise KeyRecordError(f"key {self.id}: sha256 must be 64 lower-case hex digits")

    def matches(self, presented: str) -> bool:
        """Whether ``presented`` is this key (constant time in the secret)."""
        return hmac.compare_digest(digest(presented), self.digest)


@attrs.frozen
class NewKey:
    """A key just made: the text to hand over once, and the record to store."""

    text: str
    record: ApiKey


def digest(key: str) -> str:
    """Hex SHA-256 of a key's text."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def make_key(
    name: str = "", policy: KeyPolicy | None = None, *, now: float | None = None
) -> NewKey:
    """A fresh key and its record."""
    key_id = secrets.token_hex(ID_BYTES)
    text = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(SECRET_BYTES)}"
    record = ApiKey(
        id=key_id,
        digest=digest(text),
        name=name,
        created=time.time() if now is None else now,
        policy=policy or KeyPolicy(),
    )
    return NewKey(text, record)


def key_id(presented: str) -> str | None:
    """The id of a presented key, or None when it does not have a key's shape."""
    match = _KEY.fullmatch(presented)
    return match.group(1) if match else None


def is_key_id(text: str) -> bool:
    """Whether ``text`` has the shape of a key id."""
    return _ID.fullmatch(text) is not None


def policy_fields(policy: KeyPolicy) -> dict[str, Any]:
    """The set fields of ``policy``, as stores and ``keys list`` show them."""
    fields: dict[str, Any] = {}
    for name in ("jobs_per_minute", "burst", "concurrent_jobs"):
        value = getattr(policy, name)
        if value is not None:
            fields[name] = value
    if policy.max_limits:
        fields["max_limits"] = dict(policy.max_limits)
    fields["packages"] = policy.packages
    return fields


def policy_from_fields(fields: Mapping[str, Any], where: str) -> KeyPolicy:
    """A policy from the fields :func:`policy_fields` writes.

    Raises:
        KeyRecordError: a field is unknown or invalid; the message starts with ``where``.
    """
    known = {"jobs_per_minute", "burst", "concurrent_jobs", "max_limits", "packages"}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise KeyRecordError(f"{where}: unknown setting {unknown[0]!r}")
    try:
        for name in ("jobs_per_minute", "burst", "concurrent_jobs"):
            value = fields.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise KeyRecordError(f"{name} must be an integer, got {value!r}")
        packages = fields.get("packages", False)
        if not isinstance(packages, bool):
            raise KeyRecordError(f"packages must be true or false, got {packages!r}")
        limits = fields.get("max_limits", {})
        if not isinstance(limits, dict):
            raise KeyRecordError("max_limits must be a table of limit = value")
        return KeyPolicy(
            jobs_per_minute=fields.get("jobs_per_minute"),
            burst=fields.get("burst"),
            concurrent_jobs=fields.get("concurrent_jobs"),
            max_limits=dict(limits),
            packages=packages,
        )
    except KeyRecordError as exc:
        raise KeyRecordError(f"{where}: {exc}") from None


class KeyStore(Protocol):
    """Where the gateway finds keys (the file or the database)."""

    async def find(self, key_id: str) -> ApiKey | None:
        """The record of ``key_id``, revoked ones included; None if there is none.

        Raises:
            KeyStoreUnavailable: the keys cannot be read now.
        """

    async def check(self) -> None:
        """Return when the keys can be read (readiness).

        Raises:
            KeyStoreUnavailable: they cannot.
        """

    @property
    def description(self) -> str:
        """Where the keys are, for log lines (never a password)."""
