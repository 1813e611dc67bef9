"""The submission database: SQLite or PostgreSQL behind SQLAlchemy engines, migrated by Alembic.

SQLAlchemy Core (with Alembic for the schema) is the one library: its query builder speaks both
dialects from one set of statements (``FOR UPDATE SKIP LOCKED`` where PostgreSQL has it,
``RETURNING`` on both), its pool reconnects after a server restart (``pool_pre_ping``), and
Alembic versions the schema so that an upgrade migrates a running deployment in place.

SQLite runs in WAL mode (readers never wait for the writer) with ``synchronous=NORMAL`` and a
busy timeout; writes begin with ``BEGIN IMMEDIATE``, so a transaction never has to upgrade a
read lock, which SQLite answers with an immediate "database is locked". PostgreSQL is reached
through psycopg 3; ``postgresql://`` URLs need no driver name.

The drivers block, so every query runs in a worker thread (:meth:`Database.run`), at most
``pool_size`` at once: the event loop never waits on the database.
"""

from __future__ import annotations

import fcntl
import logging
import os
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import attrs
import sqlalchemy
import trio
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url

from pistond.submissions.schema import VERSION_TABLE

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from sqlalchemy.engine import Connection, Engine

logger = logging.getLogger(__name__)

T = TypeVar("T")

SQLITE_FILE: Final = "submissions.sqlite3"
"""The SQLite database's name in the gateway's data directory."""
POOL_SIZE: Final = 8
SQLITE_BUSY_TIMEOUT: Final = 30.0
"""Seconds a SQLite statement waits for another writer before it fails."""
CONNECT_TIMEOUT: Final = 10
"""Seconds a PostgreSQL connection may take to open."""
MIGRATION_LOCK: Final = 0x70697374  # "pist": the advisory lock all migrating gateways share


class DatabaseError(Exception):
    """Raised by :func:`open_database` when the database cannot be opened or migrated."""


def database_url(configured: str, data_directory: Path) -> URL:
    """The SQLAlchemy URL of ``PISTON_DATABASE_URL``, or of the default SQLite file.

    ``postgresql://`` and ``postgres://`` mean psycopg 3 (``postgresql+psycopg://``).
    """
    if not configured:
        return URL.create("sqlite", database=str(data_directory / SQLITE_FILE))
    url = make_url(configured)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url


def describe(url: URL) -> str:
    """``url`` for log lines: the password hidden."""
    return url.render_as_string(hide_password=True)


@attrs.define(eq=False)
class Database:
    """Engines for reading and writing, and the threads queries run in."""

    url: URL
    reader: Engine
    """Transactions that only read (on SQLite: deferred, so they never wait for a writer)."""
    writer: Engine
    """Transactions that write (on SQLite: ``BEGIN IMMEDIATE``; on PostgreSQL, the reader)."""
    limiter: trio.CapacityLimiter

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.writer.dialect.name

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` in a worker thread; a cancelled caller waits for it to finish,
        so no transaction is ever left half done."""
        return await trio.to_thread.run_sync(function, *args, limiter=self.limiter)

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection in a read transaction, rolled back at the end."""
        with self.reader.connect() as connection, connection.begin():
            yield connection

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """A connection in a write transaction, committed at the end (rolled back on error)."""
        with self.writer.begin() as connection:
            yield connection

    def close(self) -> None:
        """Close every pooled connection."""
        self.reader.dispose()
        if self.writer is not self.reader:
            self.writer.dispose()


def _sqlite_engine(url: URL, begin: str) -> Engine:
    engine = sqlalchemy.create_engine(
        url,
        pool_size=POOL_SIZE,
        max_overflow=0,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT},
    )

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: object) -> None:
        # The driver's own transaction handling off: SQLAlchemy's "begin" below decides.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql(begin)

    return engine


def _engines(url: URL) -> tuple[Engine, Engine]:
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, "BEGIN"), _sqlite_engine(url, "BEGIN IMMEDIATE")
    engine = sqlalchemy.create_engine(
        url,
        pool_size=POOL_SIZE,
        max_overflow=0,
        pool_pre_ping=True,
        connect_args={"connect_timeout": CONNECT_TIMEOUT, "application_name": "pistond-gateway"},
    )
    return engine, engine


def open_database(url: URL) -> Database:
    """Connect to the database at ``url`` and bring its schema up to date.

    A SQLite file's directory is created (mode 0700) when missing. Gateways starting at once
    on one database migrate one after the other (a PostgreSQL advisory lock; a lock file
    beside a SQLite database).

    Raises:
        DatabaseError: the database cannot be reached, created or migrated; the message names
            the URL without its password.
    """
    try:
        if url.get_backend_name() == "sqlite" and url.database:
            Path(url.database).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        reader, writer = _engines(url)
    except (OSError, sqlalchemy.exc.SQLAlchemyError) as exc:
        raise DatabaseError(f"cannot open {describe(url)}: {reason(exc)}") from exc
    database = Database(url, reader, writer, trio.CapacityLimiter(POOL_SIZE))
    try:
        migrate(database)
    except (OSError, sqlalchemy.exc.SQLAlchemyError) as exc:
        database.close()
        raise DatabaseError(f"cannot open {describe(url)}: {reason(exc)}") from exc
    return database


def reason(error: BaseException) -> str:
    """A database error in the driver's own words, first line only (never the SQL, its
    parameters or SQLAlchemy's link)."""
    if isinstance(error, sqlalchemy.exc.DBAPIError) and error.orig is not None:
        error = error.orig
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def alembic_config(connection: Connection) -> AlembicConfig:
    """Alembic's configuration for the shipped migrations, bound to ``connection``."""
    config = AlembicConfig()
    location = resources.files("pistond.submissions") / "migrations"
    config.set_main_option("script_location", str(location))
    config.attributes["connection"] = connection
    config.attributes["version_table"] = VERSION_TABLE
    return config


def migrate(database: Database) -> None:
    """Upgrade the schema to the newest migration, one migrating gateway at a time."""
    with _migration_lock(database), database.writer.connect() as connection:
        command.upgrade(alembic_config(connection), "head")
        connection.commit()


@contextmanager
def _migration_lock(database: Database) -> Iterator[None]:
    if database.dialect == "sqlite":
        path = database.url.database
        if not path or path == ":memory:":
            yield
            return
        descriptor = os.open(f"{path}.migrate-lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)
        return
    with database.writer.connect() as connection:
        connection.execute(
            sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK}
        )
        connection.commit()
        try:
            yield
        finally:
            connection.execute(
                sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK}
            )
            connection.commit()
