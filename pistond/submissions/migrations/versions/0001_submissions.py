"""Create the submissions table.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """The table and its indexes, as :mod:`pistond.submissions.schema` describes them."""
    op.create_table(
        "pistond_submissions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("token", sa.String(32), nullable=False, unique=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column(
            "params",
            sa.LargeBinary,
            nullable=True,
            comment="msgpack execute params; None once done",
        ),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column(
            "available_at", sa.Double, nullable=False, comment="not claimed before this time"
        ),
        sa.Column("started_at", sa.Double, nullable=True),
        sa.Column("finished_at", sa.Double, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("lease", sa.String(32), nullable=True),
        sa.Column("lease_owner", sa.String(200), nullable=True),
        sa.Column("lease_expires", sa.Double, nullable=True),
        sa.Column("result", sa.Text, nullable=True),
        sa.Column("error_status", sa.Integer, nullable=True),
        sa.Column("error_message", sa.Text, nullable=True),
        sa.Column("truncated", sa.Boolean, nullable=False),
        sa.Column("callback_url", sa.Text, nullable=True),
        sa.Column("callback_state", sa.String(16), nullable=True),
        sa.Column("callback_attempts", sa.Integer, nullable=False),
        sa.Column("callback_due_at", sa.Double, nullable=True),
        sa.Column("callback_lease", sa.String(32), nullable=True),
        sa.Column("callback_error", sa.Text, nullable=True),
    )
    op.create_index(
        "pistond_submissions_queue", "pistond_submissions", ["state", "available_at", "id"]
    )
    op.create_index("pistond_submissions_leases", "pistond_submissions", ["state", "lease_expires"])
    op.create_index(
        "pistond_submissions_callbacks",
        "pistond_submissions",
        ["callback_state", "callback_due_at"],
    )
    op.create_index("pistond_submissions_finished", "pistond_submissions", ["finished_at"])


def downgrade() -> None:
    """Drop the table (and with it every stored submission)."""
    op.drop_table("pistond_submissions")
