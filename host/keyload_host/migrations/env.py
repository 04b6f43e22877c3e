"""Alembic's environment for the inventory: migrations run on the connection
``inventory.open_store`` hands over (never on a URL of their own), inside its transaction."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
