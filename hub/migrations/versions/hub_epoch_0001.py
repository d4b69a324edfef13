"""The epoch of the hub's Redis, to notice a Redis that lost its data."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "hub_epoch_0001"
down_revision = None
branch_labels = ("hub_epoch",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "redis_epoch",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("epoch", sa.String(64), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lost_at", sa.DateTime(timezone=True)),
    )


def downgrade() -> None:
    op.drop_table("redis_epoch")
