"""pistond.submissions.database: engines, the shipped migrations, and the errors it reports."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlalchemy
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from pistond.submissions.database import (
    DatabaseError,
    alembic_config,
    database_url,
    describe,
    open_database,
)
from pistond.submissions.schema import VERSION_TABLE, metadata
from pistond.testing.postgres import PostgresServer


def test_database_migrations_match_the_schema(database_url_text: str, tmp_path: Path) -> None:
    """The migrated database is exactly the tables schema.py describes (no autogenerate diff)."""
    database = open_database(database_url(database_url_text, tmp_path))
    try:
        with database.writer.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"version_table": VERSION_TABLE, "compare_type": True}
            )
            assert compare_metadata(context, metadata) == []
            version = connection.execute(sqlalchemy.text(f"SELECT * FROM {VERSION_TABLE}")).all()
        assert version == [("0003",)]
    finally:
        database.close()


def test_database_upgrade_keeps_submissions_without_an_owner(
    database_url_text: str, tmp_path: Path
) -> None:
    """A database of an earlier release (migration 0002) upgrades with its rows kept, each
    with no owner: readable by its token, as it was."""
    url = database_url(database_url_text, tmp_path)
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as connection:
            command.upgrade(alembic_config(connection), "0002")
            connection.execute(
                sqlalchemy.text(
                    "INSERT INTO pistond_submissions (token, state, created_at, available_at, "
                    "attempts, truncated, callback_attempts) "
                    "VALUES ('old', 'queued', 0, 0, 0, false, 0)"
                )
            )
            connection.commit()
    finally:
        engine.dispose()
    database = open_database(url)
    try:
        with database.reading() as connection:
            rows = connection.execute(
                sqlalchemy.text("SELECT token, owner FROM pistond_submissions")
            ).all()
            version = connection.execute(sqlalchemy.text(f"SELECT * FROM {VERSION_TABLE}")).all()
        assert rows == [("old", None)]
        assert version == [("0003",)]
    finally:
        database.close()


def test_database_reopen_is_a_no_op(database_url_text: str, tmp_path: Path) -> None:
    """Opening an up-to-date database migrates nothing and keeps its rows."""
    url = database_url(database_url_text, tmp_path)
    first = open_database(url)
    with first.writing() as connection:
        connection.execute(
            sqlalchemy.text(
                "INSERT INTO pistond_submissions (token, state, created_at, available_at, "
                "attempts, truncated, callback_attempts) VALUES ('t', 'queued', 0, 0, 0, false, 0)"
            )
        )
    first.close()
    second = open_database(url)
    with second.reading() as connection:
        assert connection.execute(sqlalchemy.text("SELECT token FROM pistond_submissions")).all()
    second.close()


def test_database_sqlite_default_file_in_wal_mode(tmp_path: Path) -> None:
    """Without a URL the database is a SQLite file in the data directory, created 0700,
    in WAL mode with normal synchronisation."""
    directory = tmp_path / "gateway"
    url = database_url("", directory)
    assert url.database == str(directory / "submissions.sqlite3")
    database = open_database(url)
    try:
        assert directory.stat().st_mode & 0o777 == 0o700
        with database.reading() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1
    finally:
        database.close()


def test_database_postgres_urls_use_psycopg() -> None:
    """postgresql:// and postgres:// mean psycopg 3; the password never shows in descriptions."""
    for text in ("postgresql://u:secret@db/q", "postgres://u:secret@db/q"):
        url = database_url(text, Path("/unused"))
        assert url.drivername == "postgresql+psycopg"
        assert "secret" not in describe(url)
        assert describe(url) == "postgresql+psycopg://u:***@db/q"


def test_database_unreachable_error_hides_password(postgres: PostgresServer) -> None:
    """A refused connection is a DatabaseError naming the server, never the password."""
    wrong = postgres.url().replace(postgres.password, "wrong-password-1234")
    with pytest.raises(DatabaseError) as caught:
        open_database(database_url(wrong, Path("/unused")))
    assert "wrong-password-1234" not in str(caught.value)
    assert "password authentication failed" in str(caught.value)
    assert f"127.0.0.1:{postgres.port}" in str(caught.value)


def test_database_sqlite_unwritable_directory_is_reported(tmp_path: Path) -> None:
    """A data directory that cannot be created is a DatabaseError with the reason."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(DatabaseError, match="cannot open sqlite"):
        open_database(database_url("", blocker / "gateway"))


def test_database_concurrent_first_opens_migrate_once(postgres: PostgresServer) -> None:
    """Gateways opening a new PostgreSQL database at once migrate it one after the other."""
    url = database_url(postgres.create_database("concurrent_migration"), Path("/unused"))
    errors: list[BaseException] = []

    def open_and_close() -> None:
        try:
            open_database(url).close()
        except BaseException as exc:  # the thread reports it
            errors.append(exc)

    threads = [threading.Thread(target=open_and_close) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    database = open_database(url)
    with database.reading() as connection:
        assert connection.execute(sqlalchemy.text(f"SELECT * FROM {VERSION_TABLE}")).all() == [
            ("0003",)
        ]
    database.close()
