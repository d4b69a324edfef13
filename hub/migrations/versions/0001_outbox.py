"""The outbox: events a committed state change implies, until they are published."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "hub_0001"
down_revision = None
branch_labels = ("hub",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(256), nullable=False),
        sa.Column("event_type", sa.String(256), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("origin_message_id", sa.String(64)),
        sa.Column("root_id", sa.String(256)),
        sa.Column("trace_context", sa.JSON()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True)),
    )
    # What the relay and a re-run look for: the pending rows, by writer and by age.
    op.create_index("outbox_pending_origin", "outbox", ["origin_message_id"],
                    postgresql_where=sa.text("published_at IS NULL"), sqlite_where=sa.text("published_at IS NULL"))
    op.create_index("outbox_pending_age", "outbox", ["created_at"],
                    postgresql_where=sa.text("published_at IS NULL"), sqlite_where=sa.text("published_at IS NULL"))


def downgrade() -> None:
    op.drop_table("outbox")
