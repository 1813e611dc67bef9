"""Submission test fixtures: databases of both kinds, on SQLite and on a real PostgreSQL.

Rules: every store test runs on SQLite and on PostgreSQL (one server per session, started by
:class:`~pistond.testing.postgres.PostgresServer` on a loopback port, a fresh database per
test, started only when a test needs it). Helpers live in ``support.py``.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import pytest

from pistond.submissions.database import database_url, open_database
from pistond.submissions.store import SubmissionStore
from pistond.testing.postgres import PostgresServer

if TYPE_CHECKING:
    from collections.abc import Iterator

    from pistond.submissions.database import Database

_databases = itertools.count()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session."""
    server = PostgresServer.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def short_directory() -> Iterator[Path]:
    """A directory with a short path (Unix socket paths are limited to 108 bytes)."""
    directory = Path(tempfile.mkdtemp(prefix="pistond-sub-", dir="/tmp"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url_text(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_lazy: PostgresLazy
) -> str:
    """A fresh, empty database's URL: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/queue.sqlite3"
    return postgres_lazy.get().create_database(f"test_{next(_databases)}")


@attrs.define(eq=False)
class PostgresLazy:
    """The session's PostgreSQL server, started by the first test that needs it."""

    request: pytest.FixtureRequest

    def get(self) -> PostgresServer:
        """The server."""
        server: PostgresServer = self.request.getfixturevalue("postgres")
        return server


@pytest.fixture
def postgres_lazy(request: pytest.FixtureRequest) -> PostgresLazy:
    """Access to the session's PostgreSQL server without starting it for SQLite tests."""
    return PostgresLazy(request)


@pytest.fixture
def database(database_url_text: str, tmp_path: Path) -> Iterator[Database]:
    """An opened, migrated database of each kind."""
    opened = open_database(database_url(database_url_text, tmp_path))
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def store(database: Database) -> SubmissionStore:
    """The store on a fresh database of each kind."""
    return SubmissionStore(database)
