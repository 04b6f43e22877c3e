"""Enrolment: every EI serial ever given to a blank card, unique, with its state.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "serials",
        sa.Column("serial", sa.String(64), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("time", sa.String(40), nullable=False),
        sa.Column("station", sa.String(255)),
        sa.Column("run", sa.String(64)),
        sa.Column("reader", sa.String(255)),
        sa.Column("message", sa.Text),
    )


def downgrade() -> None:
    op.drop_table("serials")
