"""Box's retention assignments as the last completed run read them: Box reports no event when an assignment is
removed, so an incremental run compares the assignments with these."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "reconciliation_0002"
down_revision = "reconciliation_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reconciliation_box_retention",
        sa.Column("folder_id", sa.String(64), primary_key=True),
        sa.Column("policies", sa.JSON(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("reconciliation_box_retention")
