"""The submissions table (SQLAlchemy Core) and the database's own clock.

Times are seconds since the epoch as double-precision numbers, read from the database's clock
(:class:`db_now`), never from a machine's: leases are compared across machines, whose clocks
may differ. The migrations in ``migrations/versions`` create exactly this table
(``tests/submissions/test_database.py`` compares them). The gateway's API keys share the
database (``pistond_api_keys``, migration 0002); a submission made with a key names it
(``owner``, migration 0003).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Double,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement

if TYPE_CHECKING:
    from sqlalchemy.sql.compiler import SQLCompiler

metadata: Final = MetaData()

submissions: Final = Table(
    "pistond_submissions",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("token", String(32), nullable=False, unique=True),
    Column("state", String(16), nullable=False),
    Column("params", LargeBinary, nullable=True, comment="msgpack execute params; None once done"),
    Column("created_at", Double, nullable=False),
    Column("available_at", Double, nullable=False, comment="not claimed before this time"),
    Column("started_at", Double, nullable=True),
    Column("finished_at", Double, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("lease", String(32), nullable=True),
    Column("lease_owner", String(200), nullable=True),
    Column("lease_expires", Double, nullable=True),
    Column("result", Text, nullable=True),
    Column("error_status", Integer, nullable=True),
    Column("error_message", Text, nullable=True),
    Column("truncated", Boolean, nullable=False, default=False),
    Column("callback_url", Text, nullable=True),
    Column("callback_state", String(16), nullable=True),
    Column("callback_attempts", Integer, nullable=False, default=0),
    Column("callback_due_at", Double, nullable=True),
    Column("callback_lease", String(32), nullable=True),
    Column("callback_error", Text, nullable=True),
    Column("owner", String(12), nullable=True, comment="id of the API key that created it"),
    Index("pistond_submissions_queue", "state", "available_at", "id"),
    Index("pistond_submissions_leases", "state", "lease_expires"),
    Index("pistond_submissions_callbacks", "callback_state", "callback_due_at"),
    Index("pistond_submissions_finished", "finished_at"),
)
"""One row per submission: its request until done, its state, lease, result and callback."""

api_keys: Final = Table(
    "pistond_api_keys",
    metadata,
    Column("id", String(12), primary_key=True, comment="the public part of the key"),
    Column("digest", String(64), nullable=False, comment="hex SHA-256 of the whole key"),
    Column("name", String(200), nullable=False, default=""),
    Column("created_at", Double, nullable=False),
    Column("revoked_at", Double, nullable=True),
    Column("policy", Text, nullable=False, comment="JSON: rate, concurrency, limits, rights"),
)
"""The gateway's API keys when ``PISTON_GATEWAY_API_KEYS=database``
(:mod:`pistond.gateway.keydb`); digests only."""

VERSION_TABLE: Final = "pistond_submissions_version"
"""Alembic's version table, named so that a database shared with other software stays tidy."""


class db_now(FunctionElement[float]):
    """The database server's current time, in seconds since the epoch."""

    type = Double()
    inherit_cache = True


@compiles(db_now, "postgresql")
def _postgresql_now(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    # clock_timestamp(), not now(): the time of the statement, not of its transaction.
    return "CAST(extract(epoch FROM clock_timestamp()) AS double precision)"


@compiles(db_now, "sqlite")
def _sqlite_now(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    # julianday('now') has millisecond precision on every SQLite 3 (unixepoch() needs 3.38).
    return "((julianday('now') - 2440587.5) * 86400.0)"
