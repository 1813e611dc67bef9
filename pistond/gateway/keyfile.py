"""API keys in a TOML file (``PISTON_GATEWAY_API_KEYS=file``), re-read when it changes.

The file holds one table per key, named by its id, with the SHA-256 of the key and never the
key itself::

    [keys.3f9a1c2b7d4e]
    name = "editor"
    sha256 = "9b7…"
    created = 2025-06-01T12:00:00Z
    jobs_per_minute = 60
    concurrent_jobs = 4
    packages = false
    max_limits = { run_timeout = 3000, run_memory_limit = 268435456 }

``pistond-gateway keys add``, ``revoke`` and ``list`` manage it (and rewrite it whole, so
comments do not survive them); it may also be written by hand or by configuration management.
The gateway looks at the file's identity (inode, size, modification time) at most once a
second and re-reads it when it changed, so an added or revoked key counts within a second,
without a restart. A file that turns invalid is reported and the last valid keys stay in force:
a typo neither locks everyone out nor lets anyone in.
"""

from __future__ import annotations

import datetime
import fcntl
import logging
import os
import tempfile
import tomllib
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any, Final

import attrs
import tomli_w
import trio

from pistond.gateway.apikeys import (
    ApiKey,
    KeyRecordError,
    is_key_id,
    policy_fields,
    policy_from_fields,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from pathlib import Path

logger = logging.getLogger(__name__)

RELOAD_INTERVAL: Final = 1.0
"""Seconds between two looks at the file's identity."""
FILE_MODE: Final = 0o640
"""Owner read-write, group (the gateway's) read: the file holds digests, not keys."""
HEADER: Final = (
    "# API keys of pistond-gateway: SHA-256 digests only (a key is shown once, by\n"
    "# `pistond-gateway keys add`). `keys add` and `keys revoke` rewrite this file.\n"
)


def _when(value: object, where: str) -> float:
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        return value.timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise KeyRecordError(f"{where} must be a date-time, got {value!r}")


def _stamp(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(round(seconds), tz=datetime.UTC)


def parse_keys(data: Mapping[str, Any], path: Path) -> dict[str, ApiKey]:
    """The keys of a parsed key file.

    Raises:
        KeyRecordError: the file's content is invalid; the message names the file and the key.
    """
    unknown = sorted(set(data) - {"keys"})
    if unknown:
        raise KeyRecordError(f"{path}: unknown setting {unknown[0]!r} (keys go in [keys.<id>])")
    tables = data.get("keys", {})
    if not isinstance(tables, dict):
        raise KeyRecordError(f"{path}: keys must be a table of [keys.<id>] tables")
    keys: dict[str, ApiKey] = {}
    for key_id, table in tables.items():
        where = f"{path}: keys.{key_id}"
        if not is_key_id(key_id):
            raise KeyRecordError(f"{where}: a key id is 12 lower-case hex digits")
        if not isinstance(table, dict):
            raise KeyRecordError(f"{where} must be a table")
        fields = dict(table)
        name = fields.pop("name", "")
        sha256 = fields.pop("sha256", None)
        created = fields.pop("created", 0.0)
        revoked = fields.pop("revoked", None)
        if not isinstance(name, str):
            raise KeyRecordError(f"{where}: name must be a string")
        if not isinstance(sha256, str):
            raise KeyRecordError(f"{where}: sha256 is required (the key's SHA-256, in hex)")
        try:
            keys[key_id] = ApiKey(
                id=key_id,
                digest=sha256,
                name=name,
                created=_when(created, "created"),
                revoked=None if revoked is None else _when(revoked, "revoked"),
                policy=policy_from_fields(fields, where),
            )
        except KeyRecordError as exc:
            text = str(exc)
            raise KeyRecordError(
                text if text.startswith(str(path)) else f"{where}: {text}"
            ) from None
    return keys


def read_keys(path: Path) -> dict[str, ApiKey]:
    """The keys in the file at ``path``; none when it does not exist.

    Raises:
        KeyRecordError: the file cannot be read or is invalid.
    """
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise KeyRecordError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise KeyRecordError(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse_keys(data, path)


def render_keys(keys: Mapping[str, ApiKey]) -> str:
    """The file's text for ``keys``, in id order."""
    tables: dict[str, Any] = {}
    for key in sorted(keys.values(), key=lambda item: item.id):
        table: dict[str, Any] = {"name": key.name, "sha256": key.digest}
        table["created"] = _stamp(key.created)
        if key.revoked is not None:
            table["revoked"] = _stamp(key.revoked)
        table.update(policy_fields(key.policy))
        tables[key.id] = table
    return HEADER + "\n" + tomli_w.dumps({"keys": tables})


def write_keys(path: Path, keys: Mapping[str, ApiKey], *, group: int | None = None) -> None:
    """Replace the file at ``path`` with ``keys``, atomically (a new file renamed over it).

    The new file keeps the old one's owner, group and mode; a first file gets mode 0640 and
    ``group`` (the gateway's, so that it can read it) when given.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        old = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        old = None
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(render_keys(keys))
            file.flush()
            if old is not None:
                os.fchmod(file.fileno(), old.st_mode & 0o7777)
                if os.geteuid() == 0:
                    os.fchown(file.fileno(), old.st_uid, old.st_gid)
            else:
                os.fchmod(file.fileno(), FILE_MODE)
                if group is not None and os.geteuid() == 0:
                    os.fchown(file.fileno(), -1, group)
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the file's writer lock (a ``.lock`` file beside it) for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def _identity(path: Path) -> tuple[int, int, int, int] | None:
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return None
    return (found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns)


@attrs.define(eq=False)
class FileKeyStore:
    """The keys of a TOML file, re-read when the file changes.

    Raises:
        KeyRecordError: from :meth:`open`, when the file is invalid at start.
    """

    path: Path
    keys: dict[str, ApiKey] = attrs.field(factory=dict)
    _identity: tuple[int, int, int, int] | None = None
    _looked: float = -RELOAD_INTERVAL
    _error: str | None = None

    @classmethod
    def open(cls, path: Path) -> FileKeyStore:
        """Read the file once (a missing file means no keys yet: every request gets 401)."""
        store = cls(path)
        store._identity = _identity(path)
        store.keys = read_keys(path)
        if store._identity is None:
            logger.warning("no API key file at %s yet: every API request gets 401", path)
        return store

    @property
    def description(self) -> str:
        """The file's path."""
        return str(self.path)

    async def find(self, key_id: str) -> ApiKey | None:
        """The record of ``key_id`` as the file says now (within a second)."""
        await self._refresh()
        return self.keys.get(key_id)

    async def check(self) -> None:
        """The file is always usable once read (an invalid new version keeps the old keys)."""
        await self._refresh()

    async def _refresh(self) -> None:
        now = trio.current_time()
        if now - self._looked < RELOAD_INTERVAL:
            return
        self._looked = now
        identity = await trio.to_thread.run_sync(_identity, self.path)
        if identity == self._identity:
            return
        try:
            keys = await trio.to_thread.run_sync(read_keys, self.path)
        except KeyRecordError as exc:
            if str(exc) != self._error:
                logger.error("API key file not reloaded, the previous keys stay: %s", exc)
                self._error = str(exc)
            return
        self._identity = identity
        self._error = None
        self.keys = keys
        logger.info("API keys reloaded from %s: %d keys", self.path, len(keys))
