"""Canonical records of clients and projects, and the count of ignored non-authoritative updates."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "master_data_0001"
down_revision = None
branch_labels = ("master_data",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "canonical_records",
        sa.Column("canonical_id", sa.String(128), primary_key=True),
        sa.Column("entity", sa.String(64), nullable=False),
        sa.Column("client_id", sa.String(128)),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_canonical_records_client_id", "canonical_records", ["client_id"])
    op.create_table(
        "ignored_updates",
        sa.Column("system", sa.String(64), primary_key=True),
        sa.Column("count", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ignored_updates")
    op.drop_table("canonical_records")
