"""API keys in the submissions database (``PISTON_GATEWAY_API_KEYS=database``).

The table ``pistond_api_keys`` (:data:`pistond.submissions.schema.api_keys`, Alembic migration
0002) lives beside the submissions, on SQLite or PostgreSQL: gateways sharing one PostgreSQL
database share their keys, and ``pistond-gateway keys`` on any machine manages them. A row holds
the key's id, the SHA-256 of the key, its name, when it was made and revoked, and its policy as
JSON.

The gateway opens the database when the first request needs a key (and again, at most every
:data:`REOPEN_INTERVAL` seconds, while it cannot); until then keyed requests get 503. Lookups
are cached for :data:`CACHE_TTL` seconds, found or not, so a revoked key is refused within that
time and a flood of made-up ids costs one query per id and period.
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Final

import attrs
import sqlalchemy
import sqlalchemy.exc
import trio
from sqlalchemy import insert, select, update

from pistond.gateway.apikeys import (
    ApiKey,
    KeyRecordError,
    KeyStoreUnavailable,
    policy_fields,
    policy_from_fields,
)
from pistond.submissions.database import DatabaseError, describe, open_database, reason
from pistond.submissions.schema import api_keys

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

    from pistond.submissions.database import Database

logger = logging.getLogger(__name__)

CACHE_TTL: Final = 5.0
"""Seconds a lookup (found or not) is reused."""
CACHE_SIZE: Final = 4096
"""Lookups kept; the least recently used go first."""
REOPEN_INTERVAL: Final = 5.0
"""Seconds between attempts to open a database that could not be opened."""
UNAVAILABLE: Final = "the API key database is unavailable, try again later"


def _record(row: Any) -> ApiKey:
    # Any: a result row, whose generic type differs between SQLAlchemy 2.0 and 2.1.
    try:
        fields = json.loads(row.policy)
    except ValueError:
        raise KeyRecordError(f"key {row.id}: its policy is not JSON") from None
    if not isinstance(fields, dict):
        raise KeyRecordError(f"key {row.id}: its policy is not a JSON object")
    return ApiKey(
        id=row.id,
        digest=row.digest,
        name=row.name,
        created=row.created_at,
        revoked=row.revoked_at,
        policy=policy_from_fields(fields, f"key {row.id}"),
    )


def add_key(database: Database, key: ApiKey) -> None:
    """Store a new key."""
    with database.writing() as connection:
        connection.execute(
            insert(api_keys).values(
                id=key.id,
                digest=key.digest,
                name=key.name,
                created_at=key.created,
                revoked_at=key.revoked,
                policy=json.dumps(policy_fields(key.policy), sort_keys=True),
            )
        )


def revoke_key(database: Database, key_id: str, now: float | None = None) -> bool:
    """Mark a key revoked; False when there is no such key (or it was revoked already)."""
    with database.writing() as connection:
        done = connection.execute(
            update(api_keys)
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=time.time() if now is None else now)
        )
        return bool(done.rowcount)


def list_keys(database: Database) -> list[ApiKey]:
    """Every key, in id order."""
    with database.reading() as connection:
        rows = connection.execute(select(api_keys).order_by(api_keys.c.id)).all()
    return [_record(row) for row in rows]


def get_key(database: Database, key_id: str) -> ApiKey | None:
    """The key ``key_id``, or None."""
    with database.reading() as connection:
        row = connection.execute(select(api_keys).where(api_keys.c.id == key_id)).first()
    return None if row is None else _record(row)


def _ping(database: Database) -> None:
    with database.reading() as connection:
        connection.execute(sqlalchemy.text("SELECT 1"))


@attrs.define(eq=False)
class DatabaseKeyStore:
    """The keys of the database at ``url``, looked up through a short cache."""

    url: URL
    database: Database | None = None
    _cache: OrderedDict[str, tuple[float, ApiKey | None]] = attrs.field(factory=OrderedDict)
    _opening: trio.Lock = attrs.field(factory=trio.Lock)
    _failed_at: float | None = None

    @property
    def description(self) -> str:
        """The database's URL, password hidden."""
        return describe(self.url)

    async def find(self, key_id: str) -> ApiKey | None:
        """The record of ``key_id`` (cached for :data:`CACHE_TTL`).

        Raises:
            KeyStoreUnavailable: the database cannot be opened or read.
        """
        now = trio.current_time()
        cached = self._cache.get(key_id)
        if cached is not None and now - cached[0] < CACHE_TTL:
            self._cache.move_to_end(key_id)
            return cached[1]
        database = await self._database()
        try:
            found = await database.run(get_key, database, key_id)
        except sqlalchemy.exc.SQLAlchemyError as exc:
            logger.warning("API key lookup failed: %s", reason(exc))
            raise KeyStoreUnavailable(UNAVAILABLE) from None
        except KeyRecordError as exc:
            logger.error("API key %s is unusable: %s", key_id, exc)
            found = None
        self._cache[key_id] = (now, found)
        self._cache.move_to_end(key_id)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return found

    async def check(self) -> None:
        """Return when the database answers.

        Raises:
            KeyStoreUnavailable: it does not.
        """
        database = await self._database()
        try:
            await database.run(_ping, database)
        except sqlalchemy.exc.SQLAlchemyError as exc:
            raise KeyStoreUnavailable(f"{UNAVAILABLE}: {reason(exc)}") from None

    async def _database(self) -> Database:
        if self.database is not None:
            return self.database
        async with self._opening:
            if self.database is not None:
                return self.database
            now = trio.current_time()
            if self._failed_at is not None and now - self._failed_at < REOPEN_INTERVAL:
                raise KeyStoreUnavailable(UNAVAILABLE)
            try:
                self.database = await trio.to_thread.run_sync(
                    open_database, self.url, abandon_on_cancel=True
                )
            except DatabaseError as exc:
                self._failed_at = now
                logger.error("API keys unavailable: %s", exc)
                raise KeyStoreUnavailable(UNAVAILABLE) from None
            self._failed_at = None
            logger.info("API keys read from %s", describe(self.url))
            return self.database

    def close(self) -> None:
        """Close the database's connections."""
        if self.database is not None:
            self.database.close()
            self.database = None
