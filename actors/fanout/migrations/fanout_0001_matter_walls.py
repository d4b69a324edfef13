"""Each matter's ethical-wall verdict as the fan-out learnt it (a wall is never taken down)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "fanout_0001"
down_revision = None
branch_labels = ("fanout",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "matter_walls",
        sa.Column("matter", sa.String(128), primary_key=True),
        sa.Column("walled", sa.Boolean(), nullable=False),
        sa.Column("learnt_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("matter_walls")
