"""Alembic's entry point for :func:`hub.db.upgrade`: runs the migrations on the connection it is handed,
keeping the version table in the hub's schema."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, version_table_schema=context.config.attributes.get("schema"),
                  transaction_per_migration=False)
with context.begin_transaction():
    context.run_migrations()
