"""Name the API key that made each submission.

Revision ID: 0003
Revises: 0002
Create Date: 2025-01-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """The ``owner`` column; submissions made before it have none (any token holder reads
    them, as before)."""
    op.add_column(
        "pistond_submissions",
        sa.Column(
            "owner", sa.String(12), nullable=True, comment="id of the API key that created it"
        ),
    )


def downgrade() -> None:
    """Drop the column (every submission becomes readable by its token alone)."""
    with op.batch_alter_table("pistond_submissions") as batch:
        batch.drop_column("owner")
