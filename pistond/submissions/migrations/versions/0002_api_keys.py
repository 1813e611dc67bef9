"""Create the API keys table of the gateway.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """The table, as :data:`pistond.submissions.schema.api_keys` describes it."""
    op.create_table(
        "pistond_api_keys",
        sa.Column("id", sa.String(12), primary_key=True, comment="the public part of the key"),
        sa.Column("digest", sa.String(64), nullable=False, comment="hex SHA-256 of the whole key"),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("revoked_at", sa.Double, nullable=True),
        sa.Column(
            "policy", sa.Text, nullable=False, comment="JSON: rate, concurrency, limits, rights"
        ),
    )


def downgrade() -> None:
    """Drop the table (every key with it)."""
    op.drop_table("pistond_api_keys")
