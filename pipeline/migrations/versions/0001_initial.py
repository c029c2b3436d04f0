"""SOAR store: tickets, timeline, ticket entities, playbook runs, pending merges.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pipeline.soar.models import JsonType, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tickets",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("incident_id", sa.String(64), nullable=False),
        sa.Column("tenant_id", sa.String(128), nullable=False),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("priority", sa.String(2), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("assignee", sa.String(128)),
        sa.Column("verdict", sa.String(32)),
        sa.Column("incident", JsonType, nullable=False),
        sa.Column("incident_version", sa.Integer, nullable=False),
        sa.Column("incident_status", sa.String(16), nullable=False),
        sa.Column("sla_due", UTCDateTime, nullable=False),
        sa.Column("sla_breached", sa.Boolean, nullable=False),
        sa.Column("escalation_level", sa.Integer, nullable=False),
        sa.Column("escalation_priority", sa.String(2)),
        sa.Column("external", JsonType, nullable=False),
        sa.Column("first_seen", UTCDateTime, nullable=False),
        sa.Column("last_seen", UTCDateTime, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("acknowledged_at", UTCDateTime),
        sa.Column("resolved_at", UTCDateTime),
        sa.Column("closed_at", UTCDateTime),
        sa.UniqueConstraint("incident_id", name="uq_tickets_incident_id"),
    )
    op.create_index("ix_tickets_tenant_id", "tickets", ["tenant_id"])
    op.create_index("ix_tickets_priority", "tickets", ["priority"])
    op.create_index("ix_tickets_status", "tickets", ["status"])
    op.create_index("ix_tickets_sla_due", "tickets", ["sla_due"])
    op.create_table(
        "timeline",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ticket_id", sa.Integer, sa.ForeignKey("tickets.id", ondelete="CASCADE"), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16)),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("data", JsonType),
    )
    op.create_index("ix_timeline_ticket_id", "timeline", ["ticket_id"])
    op.create_table(
        "ticket_entities",
        sa.Column("ticket_id", sa.Integer, sa.ForeignKey("tickets.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("value", sa.String(300), primary_key=True),
        sa.Column("tenant_id", sa.String(128), nullable=False),
    )
    op.create_index("ix_ticket_entities_value", "ticket_entities", ["tenant_id", "value"])
    op.create_table(
        "playbook_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ticket_id", sa.Integer, sa.ForeignKey("tickets.id", ondelete="CASCADE"), nullable=False),
        sa.Column("playbook", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("next_at", UTCDateTime, nullable=False),
        sa.Column("lease_until", UTCDateTime),
        sa.Column("owner", sa.String(64)),
        sa.Column("context", JsonType, nullable=False),
        sa.Column("approval", JsonType),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("ticket_id", "playbook", name="uq_run_ticket_playbook"),
    )
    op.create_index("ix_playbook_runs_ticket_id", "playbook_runs", ["ticket_id"])
    op.create_index("ix_playbook_runs_status", "playbook_runs", ["status"])
    op.create_index("ix_playbook_runs_next_at", "playbook_runs", ["next_at"])
    op.create_table(
        "pending_merges",
        sa.Column("survivor_id", sa.String(64), primary_key=True),
        sa.Column("incident_id", sa.String(64), primary_key=True),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("alert_count", sa.Integer, nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    for t in ("pending_merges", "playbook_runs", "ticket_entities", "timeline", "tickets"):
        op.drop_table(t)
