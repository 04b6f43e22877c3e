"""The inventory: one row per audit record (events) and the chain head of each audit log.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("log_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("time", sa.String(40), nullable=False),
        sa.Column("event", sa.String(40), nullable=False),
        sa.Column("station", sa.String(255)),
        sa.Column("run", sa.String(64)),
        sa.Column("reader", sa.String(255)),
        sa.Column("as_id", sa.String(64)),
        sa.Column("ei_sn", sa.String(64)),
        sa.Column("ref1", sa.Integer),
        sa.Column("ref2", sa.Integer),
        sa.Column("usage", sa.String(16)),
        sa.Column("version", sa.Integer),
        sa.Column("kcv_method", sa.String(32)),
        sa.Column("kcv", sa.String(64)),
        sa.Column("kcv_t", sa.String(100)),
        sa.Column("diversify", sa.Boolean),
        sa.Column("exported", sa.Boolean),
        sa.Column("result", sa.String(16)),
        sa.Column("sw", sa.String(8)),
        sa.Column("message", sa.Text),
        sa.UniqueConstraint("hash", name="uq_events_hash"),
        sa.UniqueConstraint("log_id", "seq", name="uq_events_log_seq"),
    )
    op.create_index("ix_events_unit", "events", ["ei_sn", "ref2"])
    op.create_index("ix_events_kcv", "events", ["kcv"])
    op.create_index("ix_events_event", "events", ["event", "result"])
    op.create_table(
        "audit_logs",
        sa.Column("log_id", sa.String(64), primary_key=True),
        sa.Column("head_seq", sa.Integer, nullable=False),
        sa.Column("head_hash", sa.String(64), nullable=False),
        sa.Column("station", sa.String(255)),
        sa.Column("path", sa.Text),
    )


def downgrade() -> None:
    op.drop_table("audit_logs")
    op.drop_table("events")
