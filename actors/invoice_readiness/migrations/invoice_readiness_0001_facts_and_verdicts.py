"""The invoice-readiness gate's facts per project, which project each invoice belongs to, and the verdict
last emitted per invoice (until now in Redis: ``hub readiness rebuild --all`` writes the facts here)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "invoice_readiness_0001"
down_revision = None
branch_labels = ("invoice_readiness",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "readiness_projects",
        sa.Column("project_code", sa.String(256), primary_key=True),
        sa.Column("engagement_type", sa.String(64)),
        sa.Column("region", sa.String(64)),
        sa.Column("country", sa.String(64)),
        sa.Column("client_id", sa.String(256)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "readiness_facts",
        sa.Column("project_code", sa.String(256), sa.ForeignKey("readiness_projects.project_code"),
                  primary_key=True),
        sa.Column("fact", sa.String(300), primary_key=True),
        sa.Column("record", sa.JSON(), nullable=False),
    )
    op.create_table(
        "readiness_invoices",
        sa.Column("invoice_number", sa.String(256), primary_key=True),
        sa.Column("project_code", sa.String(256), nullable=False),
    )
    op.create_table(
        "readiness_verdicts",
        sa.Column("invoice_number", sa.String(256), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("readiness_verdicts")
    op.drop_table("readiness_invoices")
    op.drop_table("readiness_facts")
    op.drop_table("readiness_projects")
