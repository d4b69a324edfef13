"""Reconciliation runs, the differences each found and what was done about them, and the state kept between runs."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "reconciliation_0001"
down_revision = None
branch_labels = ("reconciliation",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reconciliation_runs",
        sa.Column("run_id", sa.String(36), primary_key=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("scope", sa.String(200), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True)),
        sa.Column("repair", sa.Boolean(), nullable=False),
        sa.Column("checkpoint", sa.JSON(), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("compared", sa.Integer(), nullable=False),
        sa.Column("repaired", sa.Integer(), nullable=False),
        sa.Column("routed", sa.Integer(), nullable=False),
        sa.Column("pages", sa.Integer(), nullable=False),
        sa.Column("detail", sa.Text()),
    )
    op.create_index("reconciliation_runs_status", "reconciliation_runs", ["status", "started_at"])
    op.create_table(
        "reconciliation_findings",
        sa.Column("run_id", sa.String(36), primary_key=True),
        sa.Column("finding_key", sa.String(600), primary_key=True),
        sa.Column("code", sa.String(8), nullable=False),
        sa.Column("subject", sa.String(256), nullable=False),
        sa.Column("field", sa.String(256), nullable=False),
        sa.Column("expected", sa.Text()),
        sa.Column("actual", sa.Text()),
        sa.Column("authority", sa.String(128), nullable=False),
        sa.Column("project_code", sa.String(256)),
        sa.Column("action", sa.String(24), nullable=False),
        sa.Column("found_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("reconciliation_findings_code", "reconciliation_findings", ["run_id", "code", "finding_key"])
    op.create_table(
        "reconciliation_state",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.JSON(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("reconciliation_state")
    op.drop_table("reconciliation_findings")
    op.drop_table("reconciliation_runs")
