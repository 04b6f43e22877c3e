"""Alembic migrations of the inventory's schema (``inventory.open_store`` runs them)."""
