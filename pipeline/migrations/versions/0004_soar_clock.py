"""The SOAR clock: leases (a job one process at a time may do: the workers' clock) and the outbox of escalation
notices (sent again by the clock when the process that escalated stopped before sending).

Revision ID: 0004_soar_clock
Revises: 0003_console
Create Date: 2026-12-12
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pipeline.soar.models import JsonType, UTCDateTime

revision = "0004_soar_clock"
down_revision = "0003_console"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("until", UTCDateTime, nullable=False),
        sa.Column("acquired_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "notices",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ticket_id", sa.Integer, sa.ForeignKey("tickets.id", ondelete="CASCADE"), nullable=False),
        sa.Column("channel", sa.String(128), nullable=False),
        sa.Column("data", JsonType, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(128)),
        sa.Column("lease_until", UTCDateTime),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_index("ix_notices_ticket_id", "notices", ["ticket_id"])
    op.create_index("ix_notices_status", "notices", ["status"])


def downgrade() -> None:
    op.drop_table("notices")
    op.drop_table("leases")
