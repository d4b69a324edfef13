"""The crosswalk: canonical ids, the system ids behind them, and the lineage of their merges and splits."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "hub_0002"
down_revision = "hub_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "crosswalk_ids",
        sa.Column("canonical_id", sa.String(128), primary_key=True),
        sa.Column("entity", sa.String(64), nullable=False),
        sa.Column("resolves_to", sa.String(128), nullable=False),
        sa.Column("minted_at", sa.DateTime(timezone=True), nullable=False),
    )
    # A merge repoints every id that resolved to the merged one.
    op.create_index("ix_crosswalk_ids_resolves_to", "crosswalk_ids", ["resolves_to"])
    op.create_table(
        "crosswalk_identities",
        sa.Column("system", sa.String(64), primary_key=True),
        sa.Column("system_id", sa.String(512), primary_key=True),
        sa.Column("entity", sa.String(64), primary_key=True),
        sa.Column("canonical_id", sa.String(128), sa.ForeignKey("crosswalk_ids.canonical_id"), nullable=False),
        sa.Column("is_primary", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_crosswalk_identities_canonical_id", "crosswalk_identities", ["canonical_id"])
    # One primary id per canonical id and system; the others are aliases a merge brought.
    op.create_index("crosswalk_one_primary", "crosswalk_identities", ["canonical_id", "system"], unique=True,
                    postgresql_where=sa.text("is_primary"), sqlite_where=sa.text("is_primary"))
    op.create_table(
        "crosswalk_lineage",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("canonical_id", sa.String(128), sa.ForeignKey("crosswalk_ids.canonical_id"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("other", sa.String(128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("identities", sa.JSON(), nullable=False),
    )
    op.create_index("ix_crosswalk_lineage_canonical_id", "crosswalk_lineage", ["canonical_id"])


def downgrade() -> None:
    op.drop_table("crosswalk_lineage")
    op.drop_table("crosswalk_identities")
    op.drop_table("crosswalk_ids")
