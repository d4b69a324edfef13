"""The exception inbox: each case raised to an owner with its state, and each raise of it (with the dead letter
behind it, to replay when the case is resolved with a retry)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "exceptions_0001"
down_revision = None
branch_labels = ("exceptions",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "exception_cases",
        sa.Column("case_id", sa.String(36), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(200), nullable=False),
        sa.Column("subject", sa.String(256), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("project_code", sa.String(256)),
        sa.Column("event_id", sa.String(256)),
        sa.Column("event_type", sa.String(200)),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("occurrences", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("state_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state_by", sa.String(128)),
        sa.Column("note", sa.Text()),
    )
    op.create_index("exception_cases_state_owner", "exception_cases", ["state", "owner", "first_seen"])
    op.create_table(
        "exception_occurrences",
        sa.Column("exception_id", sa.String(256), primary_key=True),
        sa.Column("case_id", sa.String(36), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(128)),
        sa.Column("message_id", sa.String(128)),
        sa.Column("replayed_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_exception_occurrences_case_id", "exception_occurrences", ["case_id"])


def downgrade() -> None:
    op.drop_table("exception_occurrences")
    op.drop_table("exception_cases")
