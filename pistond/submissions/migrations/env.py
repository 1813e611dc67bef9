"""Alembic's environment: run the migrations on the connection pistond hands over."""

from __future__ import annotations

from alembic import context

from pistond.submissions.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=context.config.attributes["version_table"],
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()
